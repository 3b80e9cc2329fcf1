"""Everything lrfind writes or edits: atomic files and run folders, curve CSVs, result
documents, plots, training-config edits and TensorBoard scalars."""
