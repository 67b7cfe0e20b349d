"""Planning a run's GPU memory and time without weights: the real code path on fake tensors (`ditflow plan`)."""
