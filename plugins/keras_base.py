"""What the Keras backends (cnn, resnet) share: fit, batched predict, safe save and load.

Keras, and so TensorFlow, is imported only inside methods, through
:func:`import_keras`: importing this module (as ``genretag backends`` does)
costs nothing, and the svc path never loads TensorFlow.

A saved model is a normal ``.keras`` zip loadable with
``keras.models.load_model(path, safe_mode=True)``: built-in layers only (no
Lambda, no custom classes), inputs normalised inside the model.  Its genres
and hyperparameters travel in an extra zip entry, ``genretag.json``, which
Keras ignores, so a model file is self-contained even without its card.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import zipfile
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tagger.inference.backends import Backend

FORMAT = "genretag-keras/1"
META_ENTRY = "genretag.json"
#: Slices per forward pass in predict_proba: large enough to amortise per-call
#: overhead, small enough to bound memory on a whole-album batch.
PREDICT_CHUNK = 256
#: dB range of the log-mel slices (see tagger.analysis.features): the model maps [-80, 0] to [-1, 1].
DB_FLOOR = -80.0


def import_keras() -> Any:
    """Import Keras on the TensorFlow backend, with TensorFlow's start-up chatter silenced.

    TensorFlow >= 2.20 writes INFO lines to stderr before its logging is set
    up, so TF_CPP_MIN_LOG_LEVEL cannot stop them: unless the user set that
    variable (asking for TF's logs), stderr is muted at the file-descriptor
    level for the import only.  Import errors still arrive as exceptions.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "keras" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        import keras

        return keras
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    with _muted_stderr():
        import keras
    return keras


@contextlib.contextmanager
def _muted_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null (C++ writes bypass sys.stderr), then restore it."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def make_deterministic(keras: Any, seed: int) -> None:
    """Same seed, same weights and same predictions: seed everything, pin TF's op choice."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def spec_augment(batch: np.ndarray, rng: np.random.Generator, freq_masks: int, freq_width: int,
                 time_masks: int, time_width: int) -> np.ndarray:
    """SpecAugment-style masking: hide random mel bands and time spans of each slice.

    Masked cells take the slice's mean level, which is what zero means after
    normalisation in the SpecAugment paper; the input array is not modified.
    """
    out = batch.copy()
    n_freq, n_time = batch.shape[1:]
    for x in out:
        fill = float(x.mean())
        for count, width, size, axis in ((freq_masks, freq_width, n_freq, 0), (time_masks, time_width, n_time, 1)):
            for _ in range(count):
                w = int(rng.integers(0, width + 1))
                start = int(rng.integers(0, max(1, size - w + 1)))
                if axis == 0:
                    x[start:start + w, :] = fill
                else:
                    x[:, start:start + w] = fill
    return out


def _batches(keras: Any, X: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
             augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None) -> Any:
    """A PyDataset that reshuffles every epoch and augments each batch afresh.

    Randomness is keyed by (seed, epoch, batch), so results do not depend on
    the order in which Keras happens to ask for batches.
    """

    class Batches(keras.utils.PyDataset):  # defined here: keras is not importable at module load
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.order = np.random.default_rng([seed, 0]).permutation(len(X))

        def __len__(self) -> int:
            return math.ceil(len(X) / batch_size)

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            xb = X[idx]
            if augment is not None:
                xb = augment(xb, np.random.default_rng([seed, self.epoch, i, 1]))
            return xb, y[idx]

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(X))

    return Batches()


def as_slices(X: Any) -> np.ndarray:
    """Check and convert input to float32 (n, n_mels, frames) slices."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3:
        raise ValueError(f"expected log-mel slices shaped (n, mels, frames), got shape {X.shape}")
    return X


class KerasBackend(Backend):
    """Base of the Keras backends: subclasses only build the network (and may schedule the LR).

    Training: Adam on sparse cross-entropy, batches reshuffled every epoch,
    optional SpecAugment masking, and, when validation data is given, early
    stopping on validation loss that restores the best epoch's weights.
    """

    input_kind = "slices"
    model_suffix = ".keras"
    requires = ("tensorflow", "keras")
    requires_install = "genretag[keras]"  # the extra in setup.cfg: a plain install leaves TensorFlow out
    #: How this backend departs from the study it reproduces, and why (goes in the model card).
    changes_from_study: ClassVar[tuple[str, ...]] = ()

    def __init__(self, learning_rate: float = 1e-3, batch_size: int = 64, epochs: int = 30,
                 patience: int = 8, dropout: float = 0.3, bn_momentum: float = 0.9, augment: bool = True,
                 freq_masks: int = 2, freq_width: int = 12, time_masks: int = 2, time_width: int = 13) -> None:
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.dropout = dropout
        self.bn_momentum = bn_momentum
        self.augment = augment
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width = time_width

    # -- what subclasses provide ------------------------------------------
    @abstractmethod
    def build(self, keras: Any, input_shape: tuple[int, int], n_classes: int) -> Any:
        """The network, from (n_mels, frames) slices to softmax over ``n_classes``."""

    def learning_rate_for(self, keras: Any, steps_per_epoch: int, epochs: int) -> Any:
        """The optimizer's learning rate: a constant here; a subclass may return a schedule."""
        return self.learning_rate

    # -- shared pieces of a network ----------------------------------------
    @staticmethod
    def input_block(keras: Any, input_shape: tuple[int, int]) -> tuple[Any, Any]:
        """Input plus in-model normalisation: [-80, 0] dB to [-1, 1], with a channel axis."""
        inputs = keras.Input(shape=input_shape, name="log_mel_db")
        x = keras.layers.Rescaling(scale=-2.0 / DB_FLOOR, offset=1.0, name="db_to_unit")(inputs)
        return inputs, keras.layers.Reshape((*input_shape, 1), name="add_channel")(x)

    def conv_bn(self, keras: Any, x: Any, filters: int, name: str, *, kernel: int = 3, strides: int = 1) -> Any:
        """Conv (no bias: batch norm has one) then batch norm; the caller adds the activation.

        ``bn_momentum`` 0.9 rather than Keras' 0.99: with ~20 steps per epoch
        on GTZAN-sized data, 0.99 leaves the inference statistics far behind
        the weights for the first epochs, so validation loss (and early
        stopping) sees a network that does not exist yet.
        """
        x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                                name=f"{name}_conv")(x)
        return keras.layers.BatchNormalization(momentum=self.bn_momentum, name=f"{name}_bn")(x)

    def head(self, keras: Any, x: Any, n_classes: int, hidden: int = 0) -> Any:
        """Average over time, keep frequency, then (optional dense layer and) softmax.

        Genre cues can sit anywhere in a 3 s slice but not at any pitch, so
        pooling time only keeps the spectral shape and cuts the head's weights
        against Flatten by the number of time steps left.
        """
        x = keras.layers.AveragePooling2D(pool_size=(1, x.shape[2]), name="pool_time")(x)
        x = keras.layers.Flatten(name="freq_by_channel")(x)
        if hidden:
            x = keras.layers.Dense(hidden, activation="relu", name="dense")(x)
            x = keras.layers.Dropout(0.5, name="dense_dropout")(x)
        else:
            x = keras.layers.Dropout(self.dropout, name="head_dropout")(x)
        return keras.layers.Dense(n_classes, activation="softmax", name="genres")(x)

    # -- the Backend protocol ----------------------------------------------
    def fit(self, X: np.ndarray, y: Sequence[str], *, X_valid: np.ndarray | None = None,
            y_valid: Sequence[str] | None = None, epochs: int | None = None, seed: int = 0,
            callback: Any = None) -> KerasBackend:
        """Train from scratch; deterministic for a given ``seed`` on a given machine."""
        keras = import_keras()
        X = as_slices(X)
        labels = [str(g) for g in y]
        if len(X) != len(labels):
            raise ValueError(f"{len(X)} slices but {len(labels)} labels")
        self.genres_ = sorted(set(labels))
        code = {g: i for i, g in enumerate(self.genres_)}
        y_int = np.array([code[g] for g in labels], dtype=np.int64)
        validation = None
        if X_valid is not None and y_valid is not None and len(X_valid):
            unknown = sorted({str(g) for g in y_valid} - set(code))
            if unknown:
                raise ValueError(f"validation genres not in the training data: {', '.join(unknown)}")
            validation = (as_slices(X_valid), np.array([code[str(g)] for g in y_valid], dtype=np.int64))
        epochs = int(epochs or self.epochs)
        make_deterministic(keras, seed)
        model = self.build(keras, X.shape[1:], len(self.genres_))
        steps = math.ceil(len(X) / self.batch_size)
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate_for(keras, steps, epochs)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        augment = None
        if self.augment:
            def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
                return spec_augment(batch, rng, self.freq_masks, self.freq_width, self.time_masks, self.time_width)
        callbacks: list[Any] = []
        if validation is not None:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.patience,
                                                           restore_best_weights=True))
        if callback is not None:
            callbacks.append(_progress_callback(keras, model, callback, epochs))
        if validation is not None:  # as a PyDataset too: Keras' array path logs a spurious TF error
            validation = _batches(keras, *validation, self.batch_size, seed, None)
        history = model.fit(_batches(keras, X, y_int, self.batch_size, seed, augment), epochs=epochs,
                            validation_data=validation, callbacks=callbacks, verbose=0)
        self.model_ = _inference_copy(keras, model)
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        if validation is not None and self.history_.get("val_loss"):
            self.best_epoch_ = int(np.argmin(self.history_["val_loss"])) + 1
            self.best_params_ = {"epochs": self.best_epoch_}  # a refit without valid trains this long
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax outputs in chunks through the compiled graph of ``predict_on_batch`` (faster than eager; docs/backends.md)."""
        X = as_slices(X)
        expected = tuple(self.model_.input_shape[1:])
        if X.shape[1:] != expected:
            raise ValueError(f"slices of shape {X.shape[1:]} given, model expects {expected}")
        out = [np.asarray(self.model_.predict_on_batch(X[i:i + PREDICT_CHUNK]))
               for i in range(0, len(X), PREDICT_CHUNK)]
        if not out:
            return np.empty((0, len(self.genres_)))
        return np.concatenate(out).astype(np.float64)

    def save(self, path: Path) -> None:
        """Write the .keras zip plus a genretag.json entry, atomically (Keras insists on the suffix)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp.keras")
        self.model_.save(tmp)
        meta = {"format": FORMAT, "backend": self.name, "genres": list(self.genres_),
                "params": self.get_params(), "history": self.history()}
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(META_ENTRY, json.dumps(meta))
        os.replace(tmp, path)

    @classmethod
    def check_file(cls, path: Path) -> None:
        """A whole zip (every entry's CRC) with our metadata: checked without importing TensorFlow."""
        meta = cls._meta(Path(path))
        with zipfile.ZipFile(path) as zf:
            damaged = zf.testzip()
        if damaged is not None:
            raise ValueError(f"damaged entry {damaged} in the zip")
        if not isinstance(meta.get("genres"), list):
            raise ValueError(f"{META_ENTRY} lists no genres")

    @classmethod
    def _meta(cls, path: Path) -> dict[str, Any]:
        if path.suffix != ".keras":
            raise ValueError("Keras model files must end in .keras")
        meta = read_meta(path)
        if meta.get("format") != FORMAT or meta.get("backend") != cls.name:
            raise ValueError(f"not a genretag {cls.name} model (format {meta.get('format')!r}, "
                             f"backend {meta.get('backend')!r})")
        return meta

    @classmethod
    def load(cls, path: Path) -> KerasBackend:
        """Read a model written by ``save``, in Keras safe mode (no code runs from the file)."""
        path = Path(path)
        meta = cls._meta(path)
        keras = import_keras()
        self = cls(**meta.get("params", {}))
        self.model_ = keras.models.load_model(path, safe_mode=True, compile=False)
        self.genres_ = [str(g) for g in meta["genres"]]
        self.history_ = meta.get("history") or {}
        outputs = self.model_.output_shape[-1]
        if outputs != len(self.genres_):
            raise ValueError(f"network has {outputs} outputs but the file lists {len(self.genres_)} genres")
        return self

    def describe(self) -> dict[str, Any]:
        """Architecture summary and departures from the study, for the model card."""
        info: dict[str, Any] = {"architecture": (type(self).__doc__ or "").strip().splitlines()[0],
                                "changes_from_study": list(self.changes_from_study)}
        model = getattr(self, "model_", None)
        if model is not None:
            info["parameters"] = int(model.count_params())
        if getattr(self, "best_epoch_", None):
            info["best_epoch"] = self.best_epoch_
        return info


def read_meta(path: Path) -> dict[str, Any]:
    """The genretag.json entry of a .keras file; raises on a file that is not such a zip."""
    with zipfile.ZipFile(path) as zf:
        try:
            raw = zf.read(META_ENTRY)
        except KeyError:
            raise ValueError(f"no {META_ENTRY} inside: not saved by genretag") from None
    meta = json.loads(raw)
    if not isinstance(meta, dict):
        raise ValueError(f"{META_ENTRY} is not a JSON object")
    return meta


def _inference_copy(keras: Any, model: Any) -> Any:
    """The trained network without its optimizer, whose Adam moments would triple the file size."""
    copy = type(model).from_config(model.get_config())  # clone_model would keep the compiled optimizer
    copy.set_weights(model.get_weights())
    return copy


def _progress_callback(keras: Any, model: Any, report: Callable[[dict[str, Any]], Any], epochs: int) -> Any:
    """Call ``report`` after each epoch with its metrics and the learning rate in force."""

    def on_epoch_end(epoch: int, logs: dict[str, Any] | None = None) -> None:
        row: dict[str, Any] = {"epoch": epoch + 1, "epochs": epochs}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        row["learning_rate"] = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        report(row)

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)
