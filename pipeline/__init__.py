"""Chicago Taxi tip model: a TFX pipeline that runs locally and on Kubeflow."""

import os

# tf.Transform and TFMA work with Keras 2; set this before TensorFlow loads so
# that tf.keras means the same thing in every process that imports us.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
