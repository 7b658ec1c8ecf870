"""The Chicago Taxi tip model: the code that runs inside Transform and Trainer.

Features (declared once), the preprocessing_fn, the Keras model and its
export, and the serving contract every client of the exported model follows.
TFX imports these by module path (`taxi_model.preprocessing.preprocessing_fn`,
`taxi_model.training.run_fn`), so the pipeline image carries only this package,
`components/` and `schemas/` into the Transform and Trainer tasks.
"""
