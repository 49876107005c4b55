"""The one "element not covered by the model" check and its message."""

from molsym.elements import element_names, missing_elements, not_covered


def test_missing_elements_sorted_once():
    assert missing_elements([26, 1, 26, 11, 6], [1, 6, 8]) == [11, 26]
    assert missing_elements([1, 6], [1, 6, 8]) == []


def test_message_names_symbols_and_the_training_elements():
    assert not_covered([1, 6], [1, 6]) == ""
    msg = not_covered([26, 1], [8, 1, 6])
    assert msg == "element(s) Fe not covered by the model (trained on H, C, O)"
    assert element_names([11, 17]) == "Na, Cl"
