"""refquant: the golden reference for ONNX linear quantization.

    val_fp32 = scale * (val_q - zero_point)
    q = saturate(round_half_even(x / scale) + zero_point)
"""

from . import errors
from .budget import Limits, use_limits
from .calibration import calibrate
from .profiles import Profile, get_profile
from .registry import supported_ops
from .session import Session, TensorSpec

__all__ = ["Session", "TensorSpec", "Limits", "use_limits", "Profile", "get_profile", "supported_ops", "errors", "calibrate"]
__version__ = "0.1.0"
