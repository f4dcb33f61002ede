"""The public address of an invite link, and its QR code (rendered on request, never stored)."""

from __future__ import annotations

import io

import qrcode
from django.conf import settings
from django.urls import reverse


def invite_url(token: str) -> str:
    return f"{settings.PUBLIC_URL}{reverse('join', kwargs={'token': token})}"


def qr_text(url: str) -> str:
    """The QR code as text for a terminal (two rows per line of block characters)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(url)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()
