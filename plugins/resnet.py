"""The ``resnet`` backend: a small Keras ResNet on 3 s log-mel slices, with an LR schedule."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plugins.keras_base import KerasBackend

MODELS = Path(__file__).parent / "models"


class ResNetBackend(KerasBackend):
    """Residual stages of basic blocks (two 3x3 convs with batch norm and a skip) on log-mel slices.

    The learning rate follows a cosine decay after a linear warm-up, not
    ReduceLROnPlateau: GTZAN validation sets are small, so their loss is
    noisy and a plateau rule cuts the rate on noise; a cosine schedule
    depends only on the step count, so it also works without validation
    data and a run is reproducible from its parameters alone.
    """

    name = "resnet"
    changes_from_study = (
        "inputs normalised inside the model ([-80, 0] dB to [-1, 1]), so the file is self-contained",
        "LR schedule named: linear warm-up then cosine decay (the study only says 'a scheduler')",
        "sized for CPUs: four stages (16, 32, 64, 128 filters), one basic block each",
        "head averages over time and keeps frequency, then dropout and softmax",
        "batch-norm momentum 0.9 (Keras: 0.99): few steps per epoch on GTZAN-sized data",
        "SpecAugment-style frequency/time masking while training (augment=False turns it off)",
        "early stopping on validation loss, restoring the best epoch",
    )

    def __init__(self, filters: Sequence[int] = (16, 32, 64, 128), blocks_per_stage: int = 1,
                 warmup_epochs: int = 2, min_lr_ratio: float = 0.01,
                 **common: Any) -> None:
        """Network shape here; ``common`` are KerasBackend's training parameters (learning rate, epochs...)."""
        super().__init__(**common)
        self.filters = filters
        self.blocks_per_stage = blocks_per_stage
        self.warmup_epochs = warmup_epochs
        self.min_lr_ratio = min_lr_ratio

    def learning_rate_for(self, keras: Any, steps_per_epoch: int, epochs: int) -> Any:
        """Warm up linearly from a tenth of ``learning_rate`` over ``warmup_epochs``, then cosine-decay."""
        total = steps_per_epoch * epochs
        warmup = min(total - 1, steps_per_epoch * self.warmup_epochs)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=self.learning_rate * 0.1, decay_steps=max(1, total - warmup),
            alpha=self.min_lr_ratio, warmup_target=self.learning_rate, warmup_steps=max(0, warmup))

    def build(self, keras: Any, input_shape: tuple[int, int], n_classes: int) -> Any:
        layers = keras.layers
        inputs, x = self.input_block(keras, input_shape)
        x = layers.Activation("relu", name="stem_relu")(self.conv_bn(keras, x, self.filters[0], "stem"))
        x = layers.MaxPooling2D(2, name="stem_pool")(x)
        for s, n in enumerate(self.filters, 1):
            for b in range(1, self.blocks_per_stage + 1):
                x = self.basic_block(keras, x, n, stride=2 if s > 1 and b == 1 else 1, name=f"stage{s}_block{b}")
        outputs = self.head(keras, x, n_classes)
        return keras.Model(inputs, outputs, name="genretag_resnet")

    def basic_block(self, keras: Any, x: Any, filters: int, stride: int, name: str) -> Any:
        """conv-BN-ReLU-conv-BN plus the input (projected by a 1x1 conv when the shape changes), then ReLU."""
        layers = keras.layers
        y = layers.Activation("relu", name=f"{name}_relu1")(self.conv_bn(keras, x, filters, f"{name}_1", strides=stride))
        y = self.conv_bn(keras, y, filters, f"{name}_2")
        shortcut = x
        if stride != 1 or x.shape[-1] != filters:
            shortcut = self.conv_bn(keras, x, filters, f"{name}_proj", kernel=1, strides=stride)
        y = layers.Add(name=f"{name}_add")([y, shortcut])
        return layers.Activation("relu", name=f"{name}_out")(y)

    @classmethod
    def default_model(cls) -> Path | None:
        return MODELS / "resnet.keras"

