"""The cardinality attack, which wrk cannot send (it accepts only known
methods): COUNT requests, each with a random METHOD_LEN-letter method and a
random path of PATH_LEN letters, over THREADS keep-alive connections.
Prints one JSON line: requests sent, seconds, answers by status."""
import collections, http.client, json, random, string, sys, threading, time

port, count, method_len, path_len, threads = map(int, sys.argv[1:6])
statuses = collections.Counter()
lock = threading.Lock()


def word(n, letters):
    return "".join(random.choices(letters, k=n))


def worker(n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seen = collections.Counter()
    for _ in range(n):
        method = word(method_len, string.ascii_uppercase)
        path = "/" + word(path_len, string.ascii_lowercase)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            response.read()
            seen[response.status] += 1
            if response.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        except (OSError, http.client.HTTPException) as err:
            seen[type(err).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    with lock:
        statuses.update(seen)


start = time.monotonic()
workers = [threading.Thread(target=worker, args=(count // threads,)) for _ in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps({"requests": sum(statuses.values()), "seconds": round(time.monotonic() - start, 2),
                  "statuses": {str(k): v for k, v in statuses.items()}}))
