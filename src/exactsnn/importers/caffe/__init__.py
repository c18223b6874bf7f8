"""Read Caffe networks (``deploy.prototxt`` + ``.caffemodel``) without Caffe.

:mod:`.schema` declares the part of Caffe's protocol buffer schema the importer reads,
:mod:`.reader` parses both files into a :class:`CaffeNet` and :mod:`.to_keras` rebuilds it
as a Keras model.

Supported layers, in one straight chain: ``Input``, ``Convolution``, ``ReLU`` (slope 0),
``Pooling`` (MAX; AVE when it needs no padding), ``InnerProduct``, ``Flatten``, ``Dropout``
(identity at inference) and a final ``Softmax``.  Anything else (LRN, Eltwise, Concat,
BatchNorm, ...) is refused with a :class:`ValueError` naming the layer and its type.

Input images must be given in the layout Caffe's net expects, channel-last: for the Places365
VGG16 that is BGR minus the ImageNet mean (see :func:`exactsnn.imagesets.caffe_preprocess`).
"""

from .reader import SUPPORTED_TYPES, CaffeLayer, CaffeNet, read_caffe_net
from .schema import caffe_schema
from .to_keras import caffe_to_keras, main_caffe2keras

__all__ = [
    "CaffeLayer",
    "CaffeNet",
    "SUPPORTED_TYPES",
    "caffe_schema",
    "read_caffe_net",
    "caffe_to_keras",
    "main_caffe2keras",
]
