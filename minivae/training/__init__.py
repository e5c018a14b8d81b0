"""A training run around the lecture's models: the machinery, apart from the math.

Nothing in the core (``minivae.layers``, ``minivae.models``, the KLs, ...) imports
this package; it imports the core.  What a run is made of, in the order a run uses it:

* :mod:`~minivae.training.config`: every setting of a run, once (default, choices, help);
* :mod:`~minivae.training.cli`: the command line, generated from the configs;
* :mod:`~minivae.training.train`: ``train_vae`` and ``train_autoencoder``;
* :mod:`~minivae.training.steps`: one optimizer step of each objective and what it reports;
* :mod:`~minivae.training.fit`: the one fit loop, its checks and its stops;
* :mod:`~minivae.training.parallel`: the split-batch step (half batches on two cores);
* :mod:`~minivae.training.resources`: the memory check, threads, the optimizer;
* :mod:`~minivae.training.checkpoint`: the ``.npz`` file of a model and of a run
  (``load_vae``, ``load_model``);
* :mod:`~minivae.training.resume`: snapshots and resuming;
* :mod:`~minivae.training.outputs`, :mod:`~minivae.training.plots`: metrics and figures;
* :mod:`~minivae.training.files`, :mod:`~minivae.training.interrupts`: atomic writes and
  the output directory; SIGTERM as Ctrl-C, signals held back during a save.
"""
