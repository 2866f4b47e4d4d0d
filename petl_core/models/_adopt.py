from torch import nn


def adopt(module: nn.Module, cls: type) -> nn.Module:
    """A `cls` instance sharing every parameter, buffer and setting of `module`, hence the same state-dict keys.

    `cls` must subclass `type(module)` and only override methods.
    """
    adopted = cls.__new__(cls)
    adopted.__dict__.update(module.__dict__)
    return adopted
