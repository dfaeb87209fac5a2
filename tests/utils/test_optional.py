"""The optional-dependency import: present modules import, missing ones name their extra in one line."""

import pytest

from ssseg.modules.utils.optional import MissingExtraError, import_optional


def test_present_module_is_returned():
    module = import_optional("json", "serve", "a test")
    assert module.dumps([1]) == "[1]"


def test_missing_module_names_the_extra_in_one_line():
    with pytest.raises(MissingExtraError) as info:
        import_optional("ssseg_no_such_module_xyz", "onnx", "ssseg-samv2 export")
    message = str(info.value)
    assert "pip install 'ssseg[onnx]'" in message, message
    assert "ssseg-samv2 export" in message, message
    assert "\n" not in message, message
    assert isinstance(info.value, ImportError)
