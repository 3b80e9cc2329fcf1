"""What a run is made of: datasets, models, optimizers and devices, from the specs a user
gives (built-in names, torchvision, `file.py:fn` factories)."""
