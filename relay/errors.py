"""Exceptions raised by the media plane; signaling translates them once, at its edge."""


class RelayError(Exception):
    """Base class; ``code`` is the stable error code clients see."""

    code = "relay_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class SdpError(RelayError):
    code = "invalid_sdp"


class RoomFullError(RelayError):
    code = "room_full"


class NodeFullError(RelayError):
    code = "node_full"


class NotFoundError(RelayError):
    code = "not_found"


class PermissionDeniedError(RelayError):
    code = "permission_denied"


class StateError(RelayError):
    code = "invalid_state"
