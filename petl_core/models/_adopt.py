import types

from torch import nn


def adopt(module: nn.Module, cls: type) -> nn.Module:
    """A `cls` instance sharing every parameter, buffer and setting of `module`, hence the same state-dict keys.

    `cls` must subclass `type(module)` and only override methods.
    """
    adopted = cls.__new__(cls)
    adopted.__dict__.update(module.__dict__)
    return adopted


def renamed(function: types.FunctionType, name: str) -> types.FunctionType:
    """`function` under another name. TorchScript compiles a method that forward calls under its function's
    `__name__`, so a subclass whose scripted forward calls timm's forward needs that forward renamed."""
    copy = types.FunctionType(function.__code__, function.__globals__, name, function.__defaults__,
                              function.__closure__)
    copy.__qualname__ = f"{function.__qualname__.rpartition('.')[0]}.{name}".lstrip(".")
    copy.__kwdefaults__ = function.__kwdefaults__
    return copy
