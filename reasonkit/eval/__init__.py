"""The evaluation stage (``type: eval``), ``reasonkit eval``, and teacher traces (``reasonkit generate``)."""
