"""Figures: translated pairs as in the paper's Fig. 2 (:mod:`~sci2i.figures.i2i`), the report's
figures (:mod:`~sci2i.figures.report`) and toy-city's example pairs
(:mod:`~sci2i.figures.toycity`). matplotlib is imported where a figure is drawn."""
