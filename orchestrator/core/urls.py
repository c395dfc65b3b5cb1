"""The URLs this service hands out: callback URLs (per job and per account) and
input URLs a provider downloads an uploaded image from.

The one owner of their shapes. Usable without an orchestrator, from a public
base URL, the signers and a clock (the CLI prints an account's callback URL).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.common.clock import Clock
from orchestrator.security.signing import CallbackSigner, InputSigner
from schemas.jobs import Job

# How long after a job's deadline its callback URL still works: a late success
# is still worth having while the provider's result URL lives.
CALLBACK_GRACE_S = 6 * 3600.0


def _callback(public_base: str, provider: str, token: str) -> str:
    return f"{public_base}/callbacks/{provider}/{token}"


def account_callback_url(public_base: str, signer: CallbackSigner, provider: str) -> str:
    """The URL registered once for a provider's whole account (Fotor's webhook)."""
    return _callback(public_base, provider, signer.for_account(provider))


@dataclass(frozen=True, slots=True)
class Urls:
    public_base: str
    callback_signer: CallbackSigner
    input_signer: InputSigner
    clock: Clock
    input_url_ttl_s: float

    def callback_url(self, provider: str, job: Job) -> str:
        """A job's own callback URL; it works until a while after the job's deadline."""
        expires = job.deadline_at.timestamp() + CALLBACK_GRACE_S
        return _callback(
            self.public_base, provider, self.callback_signer.for_job(provider, job.id, expires)
        )

    def account_callback_url(self, provider: str) -> str:
        return account_callback_url(self.public_base, self.callback_signer, provider)

    def input_url(self, job: Job) -> str | None:
        """Where the provider gets the job's image: the client's own URL, or a signed
        one of ours for an uploaded image (valid for ``input_url_ttl_s``)."""
        return self._input(job.input_url, job.input_key)

    def mask_url(self, job: Job) -> str | None:
        """Where the provider gets a replace job's mask: signed like the image's URL."""
        return self._input(job.mask_url, job.mask_key)

    def _input(self, url: str | None, key: str | None) -> str | None:
        if url is not None:
            return url
        if key is None:
            return None
        expires = self.clock.now().timestamp() + self.input_url_ttl_s
        return f"{self.public_base}/inputs/{self.input_signer.sign(key, expires)}"
