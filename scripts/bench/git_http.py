#!/usr/bin/env python3
"""Smart-HTTP git server for the benchmark: `git http-backend` (CGI) behind a threaded HTTP
front on 127.0.0.1, serving the bare repositories under ROOT, every request needing HTTP Basic
auth whose password is TOKEN (any user name), as the integration tests' server does. Request
bodies are streamed to the backend and its answer streamed back (not buffered whole), so a
large clone costs the server what a real one would. Prints the port on stdout once listening;
exits after --lifetime seconds at the latest, so a lost run cannot leave it behind. With
--rate, every answer is sent at most that many bytes a second: a slower link than loopback.

Usage: git_http.py ROOT TOKEN [--lifetime SECS] [--rate BYTES_PER_SEC]
"""
import base64
import http.server
import os
import subprocess
import sys
import threading
import time

ROOT, TOKEN = sys.argv[1], sys.argv[2]
LIFETIME = float(sys.argv[sys.argv.index("--lifetime") + 1]) if "--lifetime" in sys.argv else 3600
RATE = float(sys.argv[sys.argv.index("--rate") + 1]) if "--rate" in sys.argv else 0
BACKEND = "/usr/lib/git-core/git-http-backend"
if not os.path.exists(BACKEND):
    BACKEND = os.path.join(
        subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip(),
        "git-http-backend",
    )


def authorised(header):
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except ValueError:
        return None
    return user or "git" if password == TOKEN else None


class Handler(http.server.BaseHTTPRequestHandler):
    # Answers are streamed chunked, and each ends its connection (the client reconnects).
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def body_chunks(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def serve(self):
        user = authorised(self.headers.get("Authorization"))
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "24")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"authentication required\n")
            self.close_connection = True
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": ROOT,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REMOTE_ADDR": "127.0.0.1",
            # http-backend serves receive-pack only to an authenticated user.
            "REMOTE_USER": user,
        }
        for header, var in (("Content-Type", "CONTENT_TYPE"), ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                            ("Git-Protocol", "GIT_PROTOCOL"), ("Content-Length", "CONTENT_LENGTH")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        proc = subprocess.Popen([BACKEND], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)

        # Fed from another thread: a backend may answer before it has read all its input.
        def feed():
            try:
                for chunk in self.body_chunks():
                    proc.stdin.write(chunk)
            except (BrokenPipeError, OSError):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        status, headers = "200 OK", []
        while True:
            line = proc.stdout.readline().decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            else:
                headers.append((name.strip(), value.strip()))
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason or None)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        started, sent = time.monotonic(), 0
        try:
            while True:
                chunk = proc.stdout.read1(1 << 16 if RATE else 1 << 20)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                if RATE:
                    time.sleep(max(0.0, sent / RATE - (time.monotonic() - started)))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        proc.wait()
        feeder.join(timeout=5)


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    threading.Timer(LIFETIME, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
