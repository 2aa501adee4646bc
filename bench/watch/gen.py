"""Write a realistic web-service log of about SIZE bytes to PATH: a 4 MiB block of varied lines
(a few of them ERROR or panicked) is generated once and written repeatedly."""
import random
import sys

path, size = sys.argv[1], int(sys.argv[2])
rng = random.Random(4)
paths = ["/", "/upload", "/api/v1/items", "/api/v1/items/{}", "/login", "/static/app.{}.js", "/health"]
agents = ["curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0", "kube-probe/1.29", "Go-http-client/1.1"]
levels = ["INFO"] * 20 + ["DEBUG"] * 5 + ["WARN"]
lines, total, n = [], 0, 0
while total < 4 << 20:
    n += 1
    ts = "2025-03-14T02:%02d:%02d.%06dZ" % (n // 60000 % 60, n // 1000 % 60, rng.randrange(10**6))
    p = rng.choice(paths).format(rng.randrange(100000))
    status = rng.choice([200] * 30 + [201, 204, 301, 304, 404, 500])
    line = '%s %s http: %s request_id=%032x method=%s path=%s status=%d bytes=%d duration_ms=%.3f ua="%s"\n' % (
        ts, rng.choice(levels), "web-7f9c", rng.getrandbits(128), rng.choice(["GET", "POST"]), p,
        status, rng.randrange(100, 90000), rng.random() * 300, rng.choice(agents))
    if n % 20000 == 7:
        line = "%s ERROR upload: payload too large for request_id=%032x\n" % (ts, rng.getrandbits(128))
    if n % 45000 == 11:
        line = "thread 'tokio-runtime-worker' panicked at src/upload.rs:88:14: called `Option::unwrap()` on a `None` value\n"
    lines.append(line)
    total += len(line)
block = "".join(lines).encode()
with open(path, "wb") as f:
    written = 0
    while written < size:
        f.write(block)
        written += len(block)
