"""The demo's networks: two small ones for 8x8 digits and the paper's two for 28x28 MNIST."""

from __future__ import annotations

from typing import Any

# The networks by name, and the image side each is built for (None: any side).
DIGITS_MODELS = ("mlp", "cnn")
PAPER_MODELS = ("lenet-300-100", "lenet-5-caffe")
MODEL_SIDES: dict[str, int | None] = {
    "mlp": None,
    "cnn": None,
    "lenet-300-100": 28,
    "lenet-5-caffe": 28,
}


def check_fits(kind: str, side: int) -> None:
    """A ValueError if network ``kind`` cannot take ``side`` x ``side`` images.

    Parameters
    ----------
    kind : str
        A name in ``MODEL_SIDES``.
    side : int
        The data's image side in pixels.

    Raises
    ------
    ValueError
        For an unknown ``kind``, a paper network on images that are not 28x28,
        or the CNN on images smaller than 4x4.
    """
    if kind not in MODEL_SIDES:
        msg = f"unknown model kind {kind!r} (the models are {', '.join(MODEL_SIDES)})"
        raise ValueError(msg)
    need = MODEL_SIDES[kind]
    if need is not None and side != need:
        msg = (
            f"{kind} is built for {need}x{need} images (MNIST form) and the data's are "
            f"{side}x{side}: give MNIST-form data with --data, or use "
            f"--models {' '.join(DIGITS_MODELS)} on the bundled digits"
        )
        raise ValueError(msg)
    if kind == "cnn" and side < 4:
        msg = f"cnn needs images of at least 4x4 pixels; the data's are {side}x{side}"
        raise ValueError(msg)


def make_model(kind: str, side: int) -> Any:
    """A fresh, randomly initialised classifier of ``side`` x ``side`` images into 10 classes.

    Parameters
    ----------
    kind : {"mlp", "cnn", "lenet-300-100", "lenet-5-caffe"}
        ``"mlp"``: 300-100 hidden units (any side); ``"cnn"``: two 3x3 conv
        layers (16, 32 channels) with max-pooling, then 256 hidden units (the
        digits' small CNN, any side >= 4: like LeNet-5-Caffe, its dense layer
        holds most of its weights, and most of them are pruned); ``"lenet-300-100"``: LeCun et al.
        (1998)'s 784-300-100-10 network; ``"lenet-5-caffe"``: Caffe's LeNet-5
        (conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2, dense 500 with a
        ReLU, dense 10, as in Caffe's ``examples/mnist``). The last two are the
        networks of Ullrich, Meeds & Welling (2017), for 28x28 images.
    side : int
        Image side in pixels.

    Returns
    -------
    torch.nn.Sequential
        The model (its initialisation draws from torch's global RNG). It takes
        a batch of images (B, side, side).

    Raises
    ------
    ValueError
        For an unknown ``kind``, or a side it cannot take (:func:`check_fits`).
    """
    from torch import nn

    check_fits(kind, side)
    if kind in ("mlp", "lenet-300-100"):
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(side * side, 300),
            nn.ReLU(),
            nn.Linear(300, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
        )
    if kind == "lenet-5-caffe":
        return nn.Sequential(
            nn.Unflatten(1, (1, side)),  # (B, 28, 28) -> (B, 1, 28, 28)
            nn.Conv2d(1, 20, 5),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(50 * 4 * 4, 500),
            nn.ReLU(),
            nn.Linear(500, 10),
        )
    s = side // 4
    return nn.Sequential(
        nn.Unflatten(1, (1, side)),  # (B, side, side) -> (B, 1, side, side)
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * s * s, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )
