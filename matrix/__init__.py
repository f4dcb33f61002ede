"""GuestGate's only code that speaks Matrix HTTP: typed results, one error tree, retries.

Plain Python (no Django): clients are built from settings elsewhere.
"""

from .admin import ListedUser, list_users, register_with_shared_secret, registration_mac
from .appservice import (
    InvalidParameter,
    RoomEvent,
    bearer_token,
    parse_transaction,
    tokens_match,
)
from .client import MatrixClient
from .errors import (
    BadRequest,
    ExclusiveNamespace,
    Forbidden,
    HomeserverUnavailable,
    InvalidUsername,
    MatrixError,
    NotFound,
    RateLimited,
    UnknownToken,
    UserInUse,
    error_from_response,
)
from .http import build_http_client
from .types import (
    CALL_MEMBER_EVENT,
    Member,
    OpenIdToken,
    PowerLevels,
    Profile,
    RoomInfo,
    Session,
    Versions,
    Whoami,
)

__all__ = [
    "CALL_MEMBER_EVENT",
    "BadRequest",
    "ExclusiveNamespace",
    "Forbidden",
    "HomeserverUnavailable",
    "InvalidParameter",
    "InvalidUsername",
    "ListedUser",
    "MatrixClient",
    "MatrixError",
    "Member",
    "NotFound",
    "OpenIdToken",
    "PowerLevels",
    "Profile",
    "RateLimited",
    "RoomEvent",
    "RoomInfo",
    "Session",
    "UnknownToken",
    "UserInUse",
    "Versions",
    "Whoami",
    "bearer_token",
    "build_http_client",
    "error_from_response",
    "list_users",
    "parse_transaction",
    "register_with_shared_secret",
    "registration_mac",
    "tokens_match",
]
