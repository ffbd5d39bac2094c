"""cvstyle: fast neural style transfer with OpenCV's DNN module."""

__version__ = "0.1.0"

from .errors import CvstyleError, DownloadError, ImageError, ModelError  # noqa: E402
from .engines import clear_network_cache  # noqa: E402
from .stylizer import Stylizer  # noqa: E402

__all__ = ["Stylizer", "clear_network_cache", "CvstyleError", "ImageError", "ModelError", "DownloadError", "__version__"]
