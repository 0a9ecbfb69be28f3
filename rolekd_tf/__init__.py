"""rolekd-tf: role-wise data augmentation for knowledge distillation (Fu, Geng et al.).

Importing the package registers its Keras layers, so ``keras.saving.load_model`` needs no
``custom_objects``.
"""
from rolekd_tf._quiet import import_tensorflow_quietly as _itq

_itq()

__version__ = "0.1.0"

from rolekd_tf import quant as _quant  # noqa: E402,F401  (registers Keras layers)
from rolekd_tf import models as _models  # noqa: E402,F401
