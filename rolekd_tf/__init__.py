"""rolekd-tf: role-wise data augmentation for knowledge distillation (Fu, Geng et al.).

Importing the package registers its Keras layers, so ``keras.saving.load_model`` needs no
``custom_objects``.
"""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from rolekd_tf import quant as _quant  # noqa: E402,F401  (registers Keras layers)
from rolekd_tf import models as _models  # noqa: E402,F401
