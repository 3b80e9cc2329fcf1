"""What lrfind computes, in numpy and plain Python: no torch, matplotlib or rich here.

Curve analysis (`analysis`), the plan of sweeps (`plan`), the LR ramp (`ramp`), the schedule
kinds (`schedules`) and the values the engine records (`records`).
"""
