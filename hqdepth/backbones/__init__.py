"""Encoders with `keras.applications` layer names and atrous output strides."""

from hqdepth.backbones.resnet import FEATURES, load_keras_application_weights, resnet50, unit_schedule

__all__ = ["FEATURES", "load_keras_application_weights", "resnet50", "unit_schedule"]
