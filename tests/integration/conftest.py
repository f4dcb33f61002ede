from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _shared_database(transactional_db: None, guestgate_web: str, no_faults_left: None) -> None:
    """Integration tests see what GuestGate's processes commit, so no test transaction."""
