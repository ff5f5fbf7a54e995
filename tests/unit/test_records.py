"""canonical_message_id: canonical ids pass as they are, other UUID forms are normalized."""

import pytest

from gateway.core.errors import InvalidContent
from gateway.store.records import canonical_message_id

CANONICAL = "2cfff786-ef40-11f1-95fd-02fc00000001"


@pytest.mark.parametrize(
    "given",
    [
        CANONICAL,
        CANONICAL.upper(),
        "{" + CANONICAL + "}",
        "urn:uuid:" + CANONICAL,
        "2cfff786ef4011f195fd02fc00000001",
    ],
)
def test_uuid_forms_become_canonical(given: str) -> None:
    assert canonical_message_id(given) == CANONICAL


@pytest.mark.parametrize("given", [CANONICAL + "\n", CANONICAL + "0", " " + CANONICAL, "", None])
def test_a_non_uuid_is_refused(given: str | None) -> None:
    with pytest.raises(InvalidContent, match="is not a UUID"):
        canonical_message_id(given)
