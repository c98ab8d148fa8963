"""Input normalisation inside the model, so that models (and SavedModels) take plain 0..255 RGB."""

import keras
from keras import ops

IMAGENET_MEAN_RGB = (123.68, 116.78, 103.94)  # HQMD / slim VGG preprocessing
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications "caffe" mode (ResNet50 v1)

TORCH_MEAN = (0.485, 0.456, 0.406)  # torchvision ImageNet models, on RGB in [0, 1]
TORCH_STD = (0.229, 0.224, 0.225)
MODES = ("mean_subtract", "inception", "caffe", "torch", "none")


@keras.saving.register_keras_serializable(package="hqdepth")
class ImageNormalization(keras.layers.Layer):
    """Maps RGB in [0, 255] to a backbone's input convention.

    - `mean_subtract`: RGB minus the ImageNet means (123.68, 116.78, 103.94), no scaling (HQMD code).
    - `inception`: x / 127.5 - 1 (keras.applications ResNet50V2 `preprocess_input`).
    - `caffe`: RGB -> BGR minus the BGR means (keras.applications ResNet50 `preprocess_input`).
    - `torch`: (RGB / 255 - mean) / std with torchvision's ImageNet mean and std (BTS, MRPAN, the transposed-conv
      decoder's ResNet-50 v1.5). Constants are made inside `call`, so exported graphs hold them (Keras'
      `Normalization` keeps them as captured tensors, which the ONNX conversion turned into extra model inputs).
    - `none`: identity.
    """

    def __init__(self, mode="mean_subtract", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Unknown normalisation mode {mode!r}; choose one of {MODES}.")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "mean_subtract":
            return images - ops.convert_to_tensor(IMAGENET_MEAN_RGB, self.compute_dtype)
        if self.mode == "inception":
            return images / 127.5 - 1.0
        if self.mode == "caffe":
            return ops.flip(images, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, self.compute_dtype)
        if self.mode == "torch":
            mean = ops.convert_to_tensor([255.0 * m for m in TORCH_MEAN], self.compute_dtype)
            std = ops.convert_to_tensor([255.0 * s for s in TORCH_STD], self.compute_dtype)
            return (images - mean) / std
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
