"""Recurrent depth (Huginn; Geiping et al. 2025): a causal LM whose shared core block runs r times, r random
in training and chosen at test time; its model, depth arithmetic, generation engine and diagnostics."""
