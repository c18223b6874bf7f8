"""Import Caffe networks (``deploy.prototxt`` + ``.caffemodel``) into the network description, without Caffe.

:mod:`.schema` declares the part of Caffe's protocol buffer schema the importer reads,
:mod:`.reader` parses both files into a :class:`CaffeNet` (layers, parameters, float64
weights in Caffe's layout), and :mod:`.graph` builds the :class:`exactsnn.ir.Graph` from it:
:func:`import_caffe` does all three, as :func:`exactsnn.importers.keras.import_keras` and
:func:`exactsnn.importers.onnx.import_onnx` do for their formats.  :mod:`.to_keras` exports
that graph as a Keras model (:func:`caffe_to_keras`, ``exactsnn caffe2keras``), for the tools
that take one.

Supported layers, in one straight chain: ``Input``, ``Convolution``, ``ReLU`` (slope 0),
``Pooling`` (MAX; AVE when it needs no padding), ``InnerProduct``, ``Flatten``, ``Dropout``
(identity at inference) and a final ``Softmax``.  Both the current ``layer`` field and the
legacy ``layers`` field (V1 layers with enum types) of ``NetParameter`` are read.  Anything
else (LRN, Eltwise, Concat, BatchNorm, ...) is refused with a :class:`ValueError` naming the
layer and its type.

Input images must be given in the layout Caffe's net expects, channel-last: for the Places365
VGG16 that is BGR minus the ImageNet mean (see :func:`exactsnn.imagesets.caffe_preprocess`).
"""

from .graph import caffe_graph, import_caffe
from .reader import SUPPORTED_TYPES, CaffeLayer, CaffeNet, read_caffe_net
from .schema import caffe_schema
from .to_keras import caffe_to_keras, main_caffe2keras

__all__ = [
    "CaffeLayer",
    "CaffeNet",
    "SUPPORTED_TYPES",
    "caffe_graph",
    "caffe_schema",
    "import_caffe",
    "read_caffe_net",
    "caffe_to_keras",
    "main_caffe2keras",
]
