import pytest

from branchsweep.registry import Registry, UnknownNameError


def test_register_get_create_and_suggestions():
    reg: Registry = Registry("widget")
    reg.register("round", lambda r=1: ("round", r))

    @reg.register("square")
    def square(name="sq"):
        """A square widget."""
        return name

    assert reg.names() == ["round", "square"]
    assert reg.create("round", r=3) == ("round", 3)
    assert reg.create("square", name="x") == "x"  # factories may take a `name` argument
    assert reg.describe("square") == "A square widget."
    with pytest.raises(UnknownNameError, match="unknown widget 'sqare' \\(did you mean 'square'\\?\\)"):
        reg.get("sqare")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("round", lambda: None)
