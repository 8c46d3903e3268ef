// Tests of the --metrics HTTP server: its routes, methods, content types, a bind failure as a
// one-line exit-71 Failure, and a prompt stop while a client holds a connection open.
#include "metrics/server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "metrics/prometheus.h"
#include "metrics/status_page.h"
#include "metrics_test_util.h"

namespace core = balance::core;
namespace metrics = balance::metrics;
using metrics::testing::endpoint;

namespace {

class MetricsServer : public ::testing::Test {
 protected:
  void SetUp() override {
    table_->append_channel(0, endpoint("127.0.0.1", 8081), 0, true);
    table_->groups[0].channels[0].totalc.store(7);
    balance::Failure failure;
    server_ = metrics::Server::start(endpoint("127.0.0.1", 0), *table_, failure);
    ASSERT_TRUE(server_) << failure.message;
    ASSERT_NE(server_->port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_connection_timeout(5);
    client_->set_read_timeout(5);
  }

  std::unique_ptr<core::Table> table_ = metrics::testing::empty_table();
  std::unique_ptr<metrics::Server> server_;
  std::unique_ptr<httplib::Client> client_;
};

}  // namespace

TEST_F(MetricsServer, ServesMetrics) {
  auto res = client_->Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), metrics::kPrometheusContentType);
  EXPECT_NE(res->body.find("balance_channel_connections_total{group=\"0\",channel=\"0\",backend=\"127.0.0.1:8081\"} 7\n"),
            std::string::npos);
}

TEST_F(MetricsServer, MetricsFollowTheTable) {
  table_->groups[0].channels[0].totalc.store(8);
  auto res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("backend=\"127.0.0.1:8081\"} 8\n"), std::string::npos);
}

TEST_F(MetricsServer, ServesStatusJson) {
  auto res = client_->Get("/status.json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(res->get_header_value("Cache-Control"), "no-store");
  EXPECT_EQ(res->body.rfind("{\"version\":", 0), 0u);
  EXPECT_NE(res->body.find("\"connections_total\":7"), std::string::npos);
}

TEST_F(MetricsServer, ServesTheStatusPageWithAStrictPolicy) {
  auto res = client_->Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(res->body, metrics::status_page_html());
  const std::string policy = res->get_header_value("Content-Security-Policy");
  EXPECT_NE(policy.find("default-src 'none'"), std::string::npos);
  EXPECT_NE(policy.find("connect-src 'self'"), std::string::npos);
}

TEST_F(MetricsServer, HeadHasHeadersButNoBody) {
  auto res = client_->Head("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(res->body.empty());
  EXPECT_EQ(res->get_header_value("Content-Type"), metrics::kPrometheusContentType);
}

TEST_F(MetricsServer, UnknownPathsAre404) {
  for (const char* path : {"/nope", "/metrics/", "/status.json.bak", "/index.html", "/..%2fetc/passwd"}) {
    auto res = client_->Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << path;
    EXPECT_EQ(res->get_header_value("Cache-Control"), "no-store") << path;
  }
}

TEST_F(MetricsServer, OtherMethodsAre405) {
  auto post = client_->Post("/metrics", "x", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->get_header_value("Allow"), "GET, HEAD");
  EXPECT_EQ(post->get_header_value("Cache-Control"), "no-store");
  auto del = client_->Delete("/");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 405);
}

// Sends `request` on a fresh connection and returns all the server sends until it closes.
std::string raw_exchange(uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0) {
    ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[65536];
    for (int i = 0; i < 1000; ++i) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return got;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST_F(MetricsServer, PipelinedRequestsGetAnAnswerAndAClose) {
  // Three requests in one send: the first is answered with "Connection: close" and the
  // connection closes at once, so the client knows to send the others again (it used to wait
  // for an answer that never came until the keep-alive timeout).
  const std::string get = "GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string got = raw_exchange(server_->port(), get + get + get);
  EXPECT_EQ(count(got, "HTTP/1.1 200 OK"), 1u) << got;
  EXPECT_EQ(count(got, "Connection: close"), 1u) << got;
}

TEST_F(MetricsServer, StopsPromptlyWithAnIdleClientConnected) {
  // A client that connected and says nothing holds a server thread until the keep-alive
  // timeout: stopping must not wait for it much longer than that.
  const int idle = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(server_->port());
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(idle, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  ASSERT_TRUE(client_->Get("/metrics"));  // the server is up and serving
  const auto start = std::chrono::steady_clock::now();
  server_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  ::close(idle);
}

TEST(MetricsServerStart, BindFailureIsOneLineExit71) {
  const int holder = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(holder, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  ASSERT_EQ(::listen(holder, 1), 0);
  socklen_t len = sizeof sin;
  ASSERT_EQ(::getsockname(holder, reinterpret_cast<sockaddr*>(&sin), &len), 0);
  const uint16_t port = ntohs(sin.sin_port);

  auto table = metrics::testing::empty_table();
  balance::Failure failure;
  auto server = metrics::Server::start(endpoint("127.0.0.1", port), *table, failure);
  EXPECT_FALSE(server);
  EXPECT_EQ(failure.exit_code, balance::kExitOsErr);
  EXPECT_EQ(failure.message, "cannot listen for --metrics on 127.0.0.1:" + std::to_string(port) +
                                 ": Address already in use, exiting.");
  ::close(holder);
}

TEST(MetricsServerStart, ServesOnIpv6Loopback) {
  const int probe = ::socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_addr = in6addr_loopback;
  const bool have_ipv6 = probe >= 0 && ::bind(probe, reinterpret_cast<sockaddr*>(&sin6), sizeof sin6) == 0;
  if (probe >= 0) ::close(probe);
  if (!have_ipv6) GTEST_SKIP() << "no IPv6 loopback";

  auto table = metrics::testing::empty_table();
  balance::Failure failure;
  auto server = metrics::Server::start(endpoint("::1", 0), *table, failure);
  ASSERT_TRUE(server) << failure.message;
  httplib::Client client("::1", server->port());
  client.set_connection_timeout(5);
  auto res = client.Get("/status.json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
}

// The hand-over of an upgrade: the new master adopts a copy of the listening socket, both
// answer until the old one stops accepting, and from then on the new one answers every request
// on the same port; none is refused.
TEST(MetricsServerHandOver, AdoptedSocketGoesOnServingAfterTheOldServerStopsAccepting) {
  auto old_table = metrics::testing::empty_table();
  auto new_table = metrics::testing::empty_table();
  old_table->append_channel(0, endpoint("127.0.0.1", 8081), 0, true);
  new_table->append_channel(0, endpoint("127.0.0.1", 8082), 0, true);
  balance::Failure failure;
  auto old_server = metrics::Server::start(endpoint("127.0.0.1", 0), *old_table, failure);
  ASSERT_TRUE(old_server) << failure.message;
  const uint16_t port = old_server->port();
  auto new_server = metrics::Server::adopt(::dup(old_server->listen_fd()), *new_table, failure);
  ASSERT_TRUE(new_server) << failure.message;
  EXPECT_EQ(new_server->port(), port);

  // Which server answered: each table names its own backend.
  const auto answered_by = [port]() -> std::string {
    httplib::Client client("127.0.0.1", port);
    client.set_connection_timeout(5);
    client.set_read_timeout(5);
    auto res = client.Get("/metrics");
    if (!res) return "error: " + httplib::to_string(res.error());
    if (res->body.find("127.0.0.1:8081") != std::string::npos) return "old";
    if (res->body.find("127.0.0.1:8082") != std::string::npos) return "new";
    return "neither";
  };
  old_server->stop_accepting();
  EXPECT_EQ(old_server->listen_fd(), -1);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(answered_by(), "new") << "request " << i;
  old_server.reset();  // its threads stop; the socket is the new server's
  EXPECT_EQ(answered_by(), "new");
}

TEST(MetricsServerHandOver, AdoptingWhatIsNotAListeningSocketFails) {
  auto table = metrics::testing::empty_table();
  balance::Failure failure;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(metrics::Server::adopt(fd, *table, failure));
  EXPECT_EQ(failure.exit_code, balance::kExitOsErr);
  EXPECT_EQ(failure.message, "cannot serve --metrics: the inherited descriptor is not a listening socket, exiting.");
}
