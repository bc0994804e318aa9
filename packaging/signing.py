"""Authenticode signing for the release: which signer is configured, signing a Windows
file in place, verifying a signature, and a throw-away test certificate.

Signers, first configured wins:
- `SWITCHBOARD_SIGN_COMMAND`: a whole command with `$f` for the file, e.g. signtool with
  Azure Trusted Signing's dlib (the release workflow sets this from its secrets);
- `SWITCHBOARD_SIGN_PFX` (a .pfx file) with its password in `SWITCHBOARD_SIGN_PFX_PASSWORD`:
  signtool on Windows, osslsigncode elsewhere; the password goes through stdin or the
  environment, never a command line;
- a test certificate (`make_test_certificate`): osslsigncode, timestamped offline by
  osslsigncode's own test TSA, for CI and forks.
None configured: signing is skipped with a notice (`skip_notice`), so a fork still builds.

Also a script: `python packaging/signing.py sign --config SIGNER.json FILE` signs one
file with a saved signer (what Inno Setup's compiler runs for each file it signs).
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.x509 import KeyUsage

COMMAND_ENV = "SWITCHBOARD_SIGN_COMMAND"
PFX_ENV = "SWITCHBOARD_SIGN_PFX"
PFX_PASSWORD_ENV = "SWITCHBOARD_SIGN_PFX_PASSWORD"
DESCRIPTION = "Switchboard"
PRODUCT_URL = "https://switchboard.invalid/"
# Real signatures get a real timestamp (a signature must outlive its certificate).
TIMESTAMP_URL = "http://timestamp.digicert.com"
TEST_ROOT_NAME = "switchboard-test-root.crt"


class SigningError(RuntimeError):
    """A file could not be signed, or its signature does not verify."""


@dataclass(frozen=True)
class Signer:
    """How to sign. `kind` is "command", "pfx" or "test"; paths are absolute strings so a
    signer survives being saved as JSON for the compiler's signing hook."""

    kind: str
    command: str = ""  # kind "command": the template with $f
    pfx: str = ""  # kind "pfx"
    cert: str = ""  # kind "test": the signing certificate chain (PEM)
    key: str = ""
    tsa_cert: str = ""  # kind "test": osslsigncode's own timestamping authority
    tsa_key: str = ""
    root: str = ""  # kind "test": the root to trust when verifying

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> Signer:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def configured_signer() -> Signer | None:
    """The signer the environment configures, or None."""
    if command := os.environ.get(COMMAND_ENV, "").strip():
        if "$f" not in command:
            raise SigningError(f"{COMMAND_ENV} must contain $f where the file goes")
        return Signer("command", command=command)
    if pfx := os.environ.get(PFX_ENV, "").strip():
        if not Path(pfx).is_file():
            raise SigningError(f"{PFX_ENV} names {pfx}, which is not a file")
        return Signer("pfx", pfx=str(Path(pfx).resolve()))
    return None


def skip_notice() -> str:
    return (f"NOTICE: not signing: no certificate is configured (set {COMMAND_ENV}, or "
            f"{PFX_ENV} with {PFX_PASSWORD_ENV}, or pass --test-certificate). The files "
            "are built unsigned; Windows SmartScreen will warn whoever runs them.")


def sign(signer: Signer, file: Path) -> None:
    """Sign `file` in place (a signed file replaces it only once signing succeeded)."""
    file = file.resolve()
    if signer.kind == "command":
        if sys.platform == "win32":
            # A Windows command line is a string; splitting it would keep its quotes in
            # the arguments (shlex's non-POSIX mode) and escape them again.
            _run(signer.command.replace("$f", f'"{file}"'), f"signing {file.name}")
        else:
            _run([str(file) if a == "$f" else a for a in shlex.split(signer.command)],
                 f"signing {file.name}")
        return
    if signer.kind == "pfx" and sys.platform == "win32":
        # signtool reads the password from its argument only; keep it out of logs at least.
        password = os.environ.get(PFX_PASSWORD_ENV, "")
        _run(["signtool", "sign", "/f", signer.pfx, "/p", password, "/fd", "sha256",
              "/tr", TIMESTAMP_URL, "/td", "sha256", "/d", DESCRIPTION, str(file)],
             f"signing {file.name}", secret=password)
        return
    with tempfile.TemporaryDirectory(prefix="sign-") as tmp:
        signed = Path(tmp) / file.name
        args = [_osslsigncode(), "sign", "-h", "sha256", "-n", DESCRIPTION, "-i", PRODUCT_URL]
        stdin = None
        if signer.kind == "pfx":
            args += ["-pkcs12", signer.pfx, "-readpass", "-", "-t", TIMESTAMP_URL]
            stdin = os.environ.get(PFX_PASSWORD_ENV, "")
        else:
            args += ["-certs", signer.cert, "-key", signer.key,
                     "-TSA-certs", signer.tsa_cert, "-TSA-key", signer.tsa_key]
        _run([*args, "-in", str(file), "-out", str(signed)], f"signing {file.name}",
             stdin=stdin)
        shutil.copymode(file, signed)
        os.replace(signed, file)


def verify(file: Path, *, root: Path | None = None) -> str:
    """Check `file`'s signature (against `root` if given: a test certificate's root);
    returns the verifier's report, raises SigningError if it does not verify."""
    if sys.platform == "win32" and root is None:
        return _run(["signtool", "verify", "/pa", "/v", str(file)], f"verifying {file.name}")
    args = [_osslsigncode(), "verify", "-in", str(file)]
    if root is not None:
        args += ["-CAfile", str(root), "-TSA-CAfile", str(root)]
    return _run(args, f"verifying {file.name}")


def _osslsigncode() -> str:
    found = shutil.which("osslsigncode")
    if not found:
        raise SigningError("osslsigncode is needed to sign here (Debian: apt install "
                           "osslsigncode)")
    return found


def _run(args: list[str] | str, what: str, *, stdin: str | None = None,
         secret: str = "") -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).strip()
    if secret:
        output = output.replace(secret, "***")
    if done.returncode != 0:
        raise SigningError(f"{what} failed (exit {done.returncode}):\n{output[-3000:]}")
    return output


def make_test_certificate(folder: Path) -> Signer:
    """A throw-away root, a code-signing certificate it issued and a timestamping
    certificate, valid for a day, in `folder`; the root is `folder/TEST_ROOT_NAME`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Switchboard test"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def issue(subject: str, key: rsa.RSAPrivateKey, issuer: x509.Name,
              issuer_key: rsa.RSAPrivateKey, usage: x509.ObjectIdentifier | None
              ) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  critical=False))
        if usage is None:  # the root
            builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=0),
                                             critical=True)
                       .add_extension(_key_usage(cert_sign=True), critical=True))
        else:
            builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                             critical=True)
                       .add_extension(_key_usage(cert_sign=False), critical=True)
                       # A timestamping certificate must say so critically (RFC 3161).
                       .add_extension(x509.ExtendedKeyUsage([usage]),
                                      critical=usage == ExtendedKeyUsageOID.TIME_STAMPING))
        return builder.sign(issuer_key, hashes.SHA256())

    def pem_key(key: rsa.RSAPrivateKey, path: Path) -> str:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        return str(path.resolve())

    def pem_certs(certs: list[x509.Certificate], path: Path) -> str:
        path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
        return str(path.resolve())

    root_key, sign_key, tsa_key = (rsa.generate_private_key(public_exponent=65537,
                                                            key_size=2048) for _ in range(3))
    root = issue("Switchboard test root", root_key, name("Switchboard test root"), root_key,
                 None)
    signing = issue("Switchboard test code signing", sign_key, root.subject, root_key,
                    ExtendedKeyUsageOID.CODE_SIGNING)
    tsa = issue("Switchboard test timestamps", tsa_key, root.subject, root_key,
                ExtendedKeyUsageOID.TIME_STAMPING)
    return Signer(
        "test",
        cert=pem_certs([signing, root], folder / "test-code-signing.pem"),
        key=pem_key(sign_key, folder / "test-code-signing.key"),
        tsa_cert=pem_certs([tsa, root], folder / "test-timestamps.pem"),
        tsa_key=pem_key(tsa_key, folder / "test-timestamps.key"),
        root=pem_certs([root], folder / TEST_ROOT_NAME),
    )


def _key_usage(*, cert_sign: bool) -> KeyUsage:
    from cryptography.x509 import KeyUsage

    return KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def main(argv: list[str]) -> int:
    """`sign --config SIGNER.json FILE`: the compiler's signing hook."""
    if len(argv) != 4 or argv[0] != "sign" or argv[1] != "--config":
        print("usage: signing.py sign --config SIGNER.json FILE", file=sys.stderr)
        return 2
    try:
        sign(Signer.load(Path(argv[2])), Path(argv[3]))
    except SigningError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
