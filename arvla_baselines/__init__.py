"""Baseline policies arvla's expert is compared against, each a ``StepPolicy`` package of its own
(configuration / modeling / policy / training): ``chunk``, the ACT-style chunked baseline."""
