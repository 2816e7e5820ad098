"""Inference with trained models: a segmenter's predictions, pseudo labels and evaluation of a
checkpoint (:mod:`~sci2i.infer.segmenter`), translation by a generator
(:mod:`~sci2i.infer.translate`), and ``sci2i predict`` on images with any trained model
(:mod:`~sci2i.infer.predict`)."""
