"""bench/benchlib/workloads.py's reading of the load generators' output, on outputs recorded from
ab 2.3 (apache2-utils 2.4.71) and wrk 4.1.0 on Debian 12: what counts, and what makes a run count
for nothing."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))

from benchlib import workloads  # noqa: E402

DOC = 627  # the backends' index.html (contenders.BODY)

AB_OK = """\
Server Software:        nginx/1.22.1
Server Hostname:        127.0.0.1
Server Port:            24945

Document Path:          /index.html
Document Length:        627 bytes

Concurrency Level:      8
Time taken for tests:   0.127 seconds
Complete requests:      500
Failed requests:        0
Total transferred:      430000 bytes
HTML transferred:       313500 bytes
Requests per second:    3938.00 [#/sec] (mean)
Time per request:       2.031 [ms] (mean)
Time per request:       0.254 [ms] (mean, across all concurrent requests)
Transfer rate:          3307.30 [Kbytes/sec] received
"""

# ab -r against a port nobody listens on: exit code 0, and a rate.
AB_REFUSED = """\
Document Path:          /
Document Length:        0 bytes

Concurrency Level:      2
Time taken for tests:   0.001 seconds
Complete requests:      20
Failed requests:        30
   (Connect: 0, Receive: 20, Length: 0, Exceptions: 10)
Total transferred:      0 bytes
HTML transferred:       0 bytes
Requests per second:    34965.03 [#/sec] (mean)
Time per request:       0.057 [ms] (mean)
"""

# A server that reads the request and closes without answering: ab takes the first close as the
# document's length (0) and fails nothing.
AB_CLOSED = """\
Server Software:
Server Hostname:        127.0.0.1
Server Port:            23431

Document Path:          /index.html
Document Length:        0 bytes

Concurrency Level:      4
Time taken for tests:   0.034 seconds
Complete requests:      200
Failed requests:        0
Total transferred:      0 bytes
HTML transferred:       0 bytes
Requests per second:    5801.14 [#/sec] (mean)
Time per request:       0.690 [ms] (mean)
"""

AB_404 = """\
Complete requests:      20
Failed requests:        0
Non-2xx responses:      20
Total transferred:      10400 bytes
HTML transferred:       6700 bytes
Requests per second:    243.24 [#/sec] (mean)
"""


def test_ab_a_good_run_gives_its_rate_and_counts():
    ab = workloads.parse_ab(AB_OK)
    assert ab == {"done": 500, "failed": 0, "rate": 3938.0, "body": 313500}
    assert workloads.ab_error(0, ab, DOC) is None


def test_ab_refused_connections_and_non_2xx_answers_fail_the_run():
    ab = workloads.parse_ab(AB_REFUSED)
    assert ab["failed"] == 30 and ab["rate"] == 34965.03
    assert workloads.ab_error(0, ab, DOC) == "ab rc=0, failed=30"
    ab = workloads.parse_ab(AB_404)
    assert ab["failed"] == 20
    assert workloads.ab_error(0, ab, DOC) == "ab rc=0, failed=20"
    ab = workloads.parse_ab(AB_OK.replace("Failed requests:        0\n",
                                          "Failed requests:        0\nWrite errors:           3\n"))
    assert ab["failed"] == 3
    assert workloads.ab_error(0, workloads.parse_ab(AB_OK), DOC) is None
    assert workloads.ab_error(1, workloads.parse_ab(AB_OK), DOC) == "ab rc=1, failed=0"
    assert workloads.ab_error(0, workloads.parse_ab("apr_socket_connect(): refused"), DOC)


def test_ab_closes_without_an_answer_fail_the_run_though_ab_fails_none():
    ab = workloads.parse_ab(AB_CLOSED)
    assert ab == {"done": 200, "failed": 0, "rate": 5801.14, "body": 0}
    assert "0 bytes of documents for 200 requests" in workloads.ab_error(0, ab, DOC)
    # One document short is enough.
    ab = workloads.parse_ab(AB_OK.replace("313500 bytes", "312873 bytes"))
    assert workloads.ab_error(0, ab, DOC)


WRK_OK = """\
Running 1s test @ http://127.0.0.1:24945/index.html
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.01ms    1.28ms   9.49ms   85.03%
    Req/Sec    15.30k     2.75k   19.43k    70.00%
  Latency Distribution
     50%  355.00us
     75%    0.96ms
     90%    3.07ms
     99%    5.33ms
  15176 requests in 1.00s, 12.52MB read
Requests/sec:  15148.48
Transfer/sec:     12.50MB
"""

# wrk against a server that closes every connection without answering.
WRK_CLOSED = """\
Running 1s test @ http://127.0.0.1:23431/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 1.02s, 0.00B read
  Socket errors: connect 0, read 3746, write 0, timeout 0
Requests/sec:      0.00
Transfer/sec:       0.00B
"""


def test_wrk_rate_and_p99_in_every_unit():
    assert workloads.parse_wrk(WRK_OK) == {"rps": 15148.48, "p99_ms": 5.33, "requests": 15176,
                                           "errors": 0}
    for line, ms in (("99%  355.00us", 0.355), ("99%    1.20s", 1200.0), ("99%   12.00ms", 12.0)):
        out = WRK_OK.replace("99%    5.33ms", line)
        assert abs(workloads.parse_wrk(out)["p99_ms"] - ms) < 1e-9, line
    # the 50 % line in us is not taken for the 99 % one
    assert workloads.parse_wrk(WRK_OK.replace("     99%    5.33ms\n", ""))["p99_ms"] is None


def _keepalive(out, rc=0):
    class Ctx:
        sizes = {"wrk_c": 10, "wrk_d": 1}
        profiler = None

        def client(self, name, argv, timeout):
            return rc, out

    class Running:
        name, port, sid = "pen", 1, None  # no session: the proxy's CPU is not read
    return workloads.keepalive(Ctx(), Running())


def test_keepalive_divides_the_machine_cpu_by_the_requests_wrk_made():
    res = _keepalive(WRK_OK)
    assert res["ka_machine_us"] >= 0 and "ka_cpu_us" not in res
    # no request count, nothing to divide by
    res = _keepalive(WRK_OK.replace("15176 requests in", "requests in"))
    assert "ka_machine_us" not in res


def test_wrk_errors_refusals_and_a_missing_p99_fail_the_run():
    assert "error" not in _keepalive(WRK_OK)
    res = _keepalive(WRK_CLOSED)
    assert res["ka_errors"] == 3746 and res["error"].startswith("wrk rc=0, errors=3746")
    non_2xx = "  Non-2xx or 3xx responses: 7\nRequests/sec:"
    res = _keepalive(WRK_OK.replace("Requests/sec:", non_2xx))
    assert res["ka_errors"] == 7 and "error" in res
    # wrk exits 0 when it cannot connect at all, and prints no numbers
    res = _keepalive("unable to connect to 127.0.0.1:23422 Connection refused\n")
    assert res["ka_rps"] is None and "no rate or p99" in res["error"]
    res = _keepalive(WRK_OK.replace("     99%    5.33ms\n", ""))
    assert res["ka_rps"] == 15148.48 and "no rate or p99" in res["error"]
