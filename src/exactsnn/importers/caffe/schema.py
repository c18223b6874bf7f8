"""The message schema: the part of Caffe's ``NetParameter`` protocol buffer that a feed-forward
ReLU classifier needs, declared with Caffe's own field numbers (``src/caffe/proto/caffe.proto``
of BVLC Caffe), so that both of Caffe's files parse with the ``protobuf`` package alone: the
architecture as text (``deploy.prototxt``) and the trained weights as binary (``.caffemodel``).

Fields not declared here are skipped by the parsers, so real files that use other options
(fillers, learning-rate multipliers, engines, ...) still parse.  Both the current ``layer``
field of ``NetParameter`` (``LayerParameter``, types as strings) and the legacy ``layers`` field
(``V1LayerParameter``, types as an enum) are declared.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["V1_TYPE_NAMES", "caffe_schema", "schema_file"]

_OPT, _REP = 1, 3  # FieldDescriptorProto labels (LABEL_OPTIONAL, LABEL_REPEATED)

# V1LayerParameter.LayerType (legacy ``layers`` field): enum name -> value.
V1_LAYER_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
    "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
    "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8,
    "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18,
    "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20,
    "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24,
    "THRESHOLD": 31,
}

# V1 enum name -> the type string current Caffe uses for the same layer.
V1_TYPE_NAMES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU",
    "SIGMOID": "Sigmoid", "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold", "NONE": "None",
}


def schema_file(raw_blobs: bool):
    """A ``FileDescriptorProto`` with the subset of caffe.proto this importer reads.

    With ``raw_blobs`` the packed float/double arrays of ``BlobProto`` are declared as
    ``bytes`` (same wire type), so a large caffemodel's weights can be turned into NumPy
    arrays with ``np.frombuffer`` instead of element by element.
    """
    from google.protobuf import descriptor_pb2 as d

    F = d.FieldDescriptorProto
    fdp = d.FileDescriptorProto(name="exactsnn_caffe_subset.proto", package="caffe", syntax="proto2")

    def enum(parent, name, values):
        e = parent.enum_type.add(name=name)
        for k, v in values.items():
            e.value.add(name=k, number=v)

    def message(name, fields, parent=None):
        m = (parent.nested_type if parent is not None else fdp.message_type).add(name=name)
        for spec in fields:
            fname, number, label, ftype = spec[:4]
            opts = spec[4] if len(spec) > 4 else {}
            f = m.field.add(name=fname, number=number, label=label, type=ftype)
            if "type_name" in opts:
                f.type_name = opts["type_name"]
            if "default" in opts:
                f.default_value = opts["default"]
            if opts.get("packed"):
                f.options.packed = True
        return m

    enum(fdp, "Phase", {"TRAIN": 0, "TEST": 1})
    message("BlobShape", [("dim", 1, _REP, F.TYPE_INT64, {"packed": True})])
    if raw_blobs:
        data = [("data", 5, _REP, F.TYPE_BYTES), ("double_data", 8, _REP, F.TYPE_BYTES)]
    else:
        data = [
            ("data", 5, _REP, F.TYPE_FLOAT, {"packed": True}),
            ("double_data", 8, _REP, F.TYPE_DOUBLE, {"packed": True}),
        ]
    message(
        "BlobProto",
        [("shape", 7, _OPT, F.TYPE_MESSAGE, {"type_name": ".caffe.BlobShape"})]
        + data
        + [
            ("num", 1, _OPT, F.TYPE_INT64, {"default": "0"}),
            ("channels", 2, _OPT, F.TYPE_INT64, {"default": "0"}),
            ("height", 3, _OPT, F.TYPE_INT64, {"default": "0"}),
            ("width", 4, _OPT, F.TYPE_INT64, {"default": "0"}),
        ],
    )
    message("NetStateRule", [("phase", 1, _OPT, F.TYPE_ENUM, {"type_name": ".caffe.Phase"})])
    message(
        "ConvolutionParameter",
        [
            ("num_output", 1, _OPT, F.TYPE_UINT32),
            ("bias_term", 2, _OPT, F.TYPE_BOOL, {"default": "true"}),
            ("pad", 3, _REP, F.TYPE_UINT32),
            ("kernel_size", 4, _REP, F.TYPE_UINT32),
            ("group", 5, _OPT, F.TYPE_UINT32, {"default": "1"}),
            ("stride", 6, _REP, F.TYPE_UINT32),
            ("pad_h", 9, _OPT, F.TYPE_UINT32, {"default": "0"}),
            ("pad_w", 10, _OPT, F.TYPE_UINT32, {"default": "0"}),
            ("kernel_h", 11, _OPT, F.TYPE_UINT32),
            ("kernel_w", 12, _OPT, F.TYPE_UINT32),
            ("stride_h", 13, _OPT, F.TYPE_UINT32),
            ("stride_w", 14, _OPT, F.TYPE_UINT32),
            ("axis", 16, _OPT, F.TYPE_INT32, {"default": "1"}),
            ("dilation", 18, _REP, F.TYPE_UINT32),
        ],
    )
    pool = message(
        "PoolingParameter",
        [
            ("pool", 1, _OPT, F.TYPE_ENUM, {"type_name": ".caffe.PoolingParameter.PoolMethod", "default": "MAX"}),
            ("kernel_size", 2, _OPT, F.TYPE_UINT32),
            ("stride", 3, _OPT, F.TYPE_UINT32, {"default": "1"}),
            ("pad", 4, _OPT, F.TYPE_UINT32, {"default": "0"}),
            ("kernel_h", 5, _OPT, F.TYPE_UINT32),
            ("kernel_w", 6, _OPT, F.TYPE_UINT32),
            ("stride_h", 7, _OPT, F.TYPE_UINT32),
            ("stride_w", 8, _OPT, F.TYPE_UINT32),
            ("pad_h", 9, _OPT, F.TYPE_UINT32, {"default": "0"}),
            ("pad_w", 10, _OPT, F.TYPE_UINT32, {"default": "0"}),
            ("global_pooling", 12, _OPT, F.TYPE_BOOL, {"default": "false"}),
            (
                "round_mode", 13, _OPT, F.TYPE_ENUM,
                {"type_name": ".caffe.PoolingParameter.RoundMode", "default": "CEIL"},
            ),
        ],
    )
    enum(pool, "PoolMethod", {"MAX": 0, "AVE": 1, "STOCHASTIC": 2})
    enum(pool, "RoundMode", {"CEIL": 0, "FLOOR": 1})
    message(
        "InnerProductParameter",
        [
            ("num_output", 1, _OPT, F.TYPE_UINT32),
            ("bias_term", 2, _OPT, F.TYPE_BOOL, {"default": "true"}),
            ("axis", 5, _OPT, F.TYPE_INT32, {"default": "1"}),
            ("transpose", 6, _OPT, F.TYPE_BOOL, {"default": "false"}),
        ],
    )
    message("ReLUParameter", [("negative_slope", 1, _OPT, F.TYPE_FLOAT, {"default": "0"})])
    message(
        "DropoutParameter",
        [
            ("dropout_ratio", 1, _OPT, F.TYPE_FLOAT, {"default": "0.5"}),
            # only in some Caffe forks; false would make test-time output scaled
            ("scale_train", 2, _OPT, F.TYPE_BOOL, {"default": "true"}),
        ],
    )
    message("SoftmaxParameter", [("axis", 2, _OPT, F.TYPE_INT32, {"default": "1"})])
    message(
        "FlattenParameter",
        [
            ("axis", 1, _OPT, F.TYPE_INT32, {"default": "1"}),
            ("end_axis", 2, _OPT, F.TYPE_INT32, {"default": "-1"}),
        ],
    )
    message("InputParameter", [("shape", 1, _REP, F.TYPE_MESSAGE, {"type_name": ".caffe.BlobShape"})])

    def msg(name, number, type_name, label=_OPT):
        return (name, number, label, F.TYPE_MESSAGE, {"type_name": f".caffe.{type_name}"})

    message(
        "LayerParameter",
        [
            ("name", 1, _OPT, F.TYPE_STRING),
            ("type", 2, _OPT, F.TYPE_STRING),
            ("bottom", 3, _REP, F.TYPE_STRING),
            ("top", 4, _REP, F.TYPE_STRING),
            msg("blobs", 7, "BlobProto", _REP),
            msg("include", 8, "NetStateRule", _REP),
            msg("exclude", 9, "NetStateRule", _REP),
            ("phase", 10, _OPT, F.TYPE_ENUM, {"type_name": ".caffe.Phase"}),
            msg("convolution_param", 106, "ConvolutionParameter"),
            msg("dropout_param", 108, "DropoutParameter"),
            msg("inner_product_param", 117, "InnerProductParameter"),
            msg("pooling_param", 121, "PoolingParameter"),
            msg("relu_param", 123, "ReLUParameter"),
            msg("softmax_param", 125, "SoftmaxParameter"),
            msg("flatten_param", 135, "FlattenParameter"),
            msg("input_param", 143, "InputParameter"),
        ],
    )
    v1 = message(
        "V1LayerParameter",
        [
            ("bottom", 2, _REP, F.TYPE_STRING),
            ("top", 3, _REP, F.TYPE_STRING),
            ("name", 4, _OPT, F.TYPE_STRING),
            ("type", 5, _OPT, F.TYPE_ENUM, {"type_name": ".caffe.V1LayerParameter.LayerType"}),
            msg("blobs", 6, "BlobProto", _REP),
            msg("convolution_param", 10, "ConvolutionParameter"),
            msg("dropout_param", 12, "DropoutParameter"),
            msg("inner_product_param", 17, "InnerProductParameter"),
            msg("pooling_param", 19, "PoolingParameter"),
            msg("relu_param", 30, "ReLUParameter"),
            msg("include", 32, "NetStateRule", _REP),
            msg("exclude", 33, "NetStateRule", _REP),
            msg("softmax_param", 39, "SoftmaxParameter"),
        ],
    )
    enum(v1, "LayerType", V1_LAYER_TYPES)
    message(
        "NetParameter",
        [
            ("name", 1, _OPT, F.TYPE_STRING),
            msg("layers", 2, "V1LayerParameter", _REP),
            ("input", 3, _REP, F.TYPE_STRING),
            ("input_dim", 4, _REP, F.TYPE_INT64),
            msg("input_shape", 8, "BlobShape", _REP),
            msg("layer", 100, "LayerParameter", _REP),
        ],
    )
    return fdp


@lru_cache(maxsize=None)
def caffe_schema(raw_blobs: bool = False) -> dict:
    """Message classes for the caffe.proto subset: name -> class (``NetParameter``, ``BlobProto``, ...).

    Each call variant lives in its own descriptor pool, so it never clashes with a real
    ``caffe_pb2`` that may be imported in the same process.
    """
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    fdp = schema_file(raw_blobs)
    pool.Add(fdp)
    names = [m.name for m in fdp.message_type]
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{n}")) for n in names}

