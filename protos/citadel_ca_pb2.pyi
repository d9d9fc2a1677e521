from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class CreateCertificateRequest(_message.Message):
    __slots__ = ("csr", "validity_seconds")
    CSR_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    csr: str
    validity_seconds: int
    def __init__(self, csr: _Optional[str] = ..., validity_seconds: _Optional[int] = ...) -> None: ...

class CreateCertificateResponse(_message.Message):
    __slots__ = ("cert_chain", "root_cert", "identity")
    CERT_CHAIN_FIELD_NUMBER: _ClassVar[int]
    ROOT_CERT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    cert_chain: _containers.RepeatedScalarFieldContainer[str]
    root_cert: str
    identity: str
    def __init__(self, cert_chain: _Optional[_Iterable[str]] = ..., root_cert: _Optional[str] = ..., identity: _Optional[str] = ...) -> None: ...
