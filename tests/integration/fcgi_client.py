"""A minimal FastCGI client (FastCGI 1.0, one request per connection),
enough to talk to a worker without nginx: the system deployment starts
workers with spawn-fcgi and multiwatch, and the tests check them that way."""
import socket
import struct

BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR = 1, 3, 4, 5, 6, 7
RESPONDER = 1


def _record(rtype, req_id, content=b""):
    pad = (8 - len(content) % 8) % 8
    return struct.pack(">BBHHBB", 1, rtype, req_id, len(content), pad, 0) + content + b"\0" * pad


def _nv(name, value):
    out = b""
    for s in (name, value):
        n = len(s)
        out += bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return out + name + value


def encode(method, uri, body=b"", headers=None, remote_addr="127.0.0.1"):
    """The records of one request, as a web server sends them."""
    params = {"REQUEST_METHOD": method, "REQUEST_URI": uri,
              "DOCUMENT_URI": uri.split("?")[0],
              "QUERY_STRING": uri.split("?", 1)[1] if "?" in uri else "",
              "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": remote_addr,
              "SERVER_PROTOCOL": "HTTP/1.1"}
    for k, v in (headers or {}).items():
        params["HTTP_" + k.upper().replace("-", "_")] = v
    data = _record(BEGIN_REQUEST, 1, struct.pack(">HB5x", RESPONDER, 0))
    blob = b"".join(_nv(k.encode(), v.encode()) for k, v in params.items())
    data += _record(PARAMS, 1, blob) + _record(PARAMS, 1)
    for i in range(0, len(body), 32768):
        data += _record(STDIN, 1, body[i:i + 32768])
    return data + _record(STDIN, 1)


def request(path_or_addr, method, uri, body=b"", headers=None, timeout=10):
    """Returns (status, headers dict, body bytes) of one request; to a unix
    socket's path, or to a (host, port) TCP address."""
    s = socket.socket(socket.AF_INET if isinstance(path_or_addr, tuple) else socket.AF_UNIX,
                      socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path_or_addr)
    try:
        s.sendall(encode(method, uri, body, headers))
        return read_response(s)
    finally:
        s.close()


def read_response(s):
    """(status, headers dict, body bytes) of the answer on socket s."""
    out = b""
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 8:
            _, rtype, _, clen, plen, _ = struct.unpack(">BBHHBB", buf[:8])
            if len(buf) < 8 + clen + plen:
                break
            content = buf[8:8 + clen]
            buf = buf[8 + clen + plen:]
            if rtype == STDOUT:
                out += content
            elif rtype == END_REQUEST:
                return _parse(out)
    return _parse(out)


def _parse(out):
    head, _, body = out.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode().split("\r\n"):
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    status = int(headers.get("status", "200").split()[0])
    return status, headers, body
