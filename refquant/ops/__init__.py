"""Operator kernels, one op family per module. Importing this package registers them all."""

from . import quantize  # noqa: F401
from . import integer  # noqa: F401
from . import nn  # noqa: F401
from . import elementwise  # noqa: F401
from . import activations  # noqa: F401
from . import linalg  # noqa: F401
from . import reduce  # noqa: F401
from . import tensor  # noqa: F401
from . import shape  # noqa: F401
from . import indexing  # noqa: F401
from . import einsum  # noqa: F401
from . import normalization  # noqa: F401
from . import resize  # noqa: F401
from . import signal  # noqa: F401
from . import recurrent  # noqa: F401
from . import contrib_elementwise  # noqa: F401
from . import contrib_pool  # noqa: F401
from . import contrib_linear  # noqa: F401
from . import contrib_quantize  # noqa: F401
from . import contrib_recurrent  # noqa: F401
from . import contrib_activations  # noqa: F401
from . import contrib_matmul  # noqa: F401
from . import contrib_normalization  # noqa: F401
from . import contrib_attention  # noqa: F401
from . import contrib_weight_only  # noqa: F401
from . import control  # noqa: F401
