"""Training-side code: GTZAN data, split protocols and model fitting.

``tagger`` reaches this package only lazily, from the ``train`` and ``report``
commands, so importing it stays cheap (no scikit-learn, no TensorFlow).
"""
