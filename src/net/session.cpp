#include "net/session.h"

#include <sys/epoll.h>

#include <cstring>

#include "log/log.h"
#include "net/proxy_protocol.h"
#include "net/sockets.h"
#include "net/worker.h"

namespace balance::net {
namespace {

// Registered once per socket, edge-triggered: the flags in Side remember readiness.
constexpr uint32_t kStreamEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;

core::SelectorOptions selector_options(const cli::Config& c) {
  return core::SelectorOptions{c.hash_failover, c.autodisable};
}

}  // namespace

const char* to_string(EndReason r) {
  switch (r) {
    case EndReason::ClientClosed: return "client-closed";
    case EndReason::ServerClosed: return "server-closed";
    case EndReason::ClientReset: return "client-reset";
    case EndReason::ServerReset: return "server-reset";
    case EndReason::IdleTimeout: return "idle-timeout";
    case EndReason::NoChannel: return "no-channel";
    case EndReason::Shed: return "shed";
    case EndReason::Shutdown: return "shutdown";
  }
  return "unknown";
}

Session::Session(Worker& worker, Fd client, const core::Endpoint& peer)
    : worker_(worker),
      loop_(worker.loop()),
      peer_(peer),
      selector_(worker.shared().table, peer, selector_options(worker.shared().config)) {
  client_.fd = std::move(client);
  started_ms_ = loop_.now_ms();
}

Session::~Session() {
  loop_.timers().cancel(timer_);
  if (pick_) core::release(worker_.shared().table, pick_->group, pick_->channel);
}

// The client is watched from the start, so that whatever it sends while the connect is under
// way is known the moment the connect completes.
void Session::start() {
  if (!loop_.add(client_.fd.get(), kStreamEvents, client_watch_)) {
    // A resource of this host, as when the client is shed at the descriptor limit: accepted,
    // and closed without a channel, so refused.
    log::write(log::Level::Warning, "cannot watch a client socket: %s", std::strerror(errno));
    worker_.shared().table.header.refused_total.fetch_add(1, std::memory_order_relaxed);
    close(EndReason::NoChannel);
    return;
  }
  try_next_channel();
}

void Session::try_next_channel() {
  const auto& config = worker_.shared().config;
  while (auto pick = selector_.next()) {
    pick_ = pick;
    BALANCE_DEBUG("client %s: trying group %u channel %u (%s)", peer_.to_string().c_str(), pick->group,
                  pick->channel, pick->endpoint.to_string().c_str());
    // A socket of an earlier connection, if one is kept (SocketPool); a bound one (-B) is not.
    Fd reused = config.out_bind ? Fd() : worker_.sockets().take(socket_kind(pick->endpoint, config.loopback_cc));
    const bool was_reused = static_cast<bool>(reused);
    bool watched = was_reused;  // a kept socket is in epoll already (parked)
    ConnectResult r =
        start_connect(pick->endpoint, config.out_bind, /*ack_with_data=*/true, config.loopback_cc, std::move(reused));
    if (r.status == ConnectStatus::Failed && (was_reused || is_local_resource_error(r.error))) {
      // Once more with a new socket: what a kept socket met is not blamed on the channel, and
      // the descriptors of the kept ones may be what was missing.
      const bool freed = worker_.sockets().clear();
      if (was_reused || freed) {
        r = start_connect(pick->endpoint, config.out_bind, /*ack_with_data=*/true, config.loopback_cc);
        watched = false;
      }
    }
    // (-a must not disable a healthy channel because balance itself ran out of descriptors.)
    if (r.status == ConnectStatus::Failed && is_local_resource_error(r.error)) {
      BALANCE_DEBUG("client %s: cannot connect out: %s; closing", peer_.to_string().c_str(), std::strerror(r.error));
      break;  // the slot is given back below; the channel is not failed
    }
    if (r.status == ConnectStatus::Failed) {
      fail_current(r.error);
      continue;
    }
    server_.fd = std::move(r.fd);
    if (!(watched ? loop_.retarget(server_.fd.get(), kStreamEvents, server_watch_)
                  : loop_.add(server_.fd.get(), kStreamEvents, server_watch_))) {
      BALANCE_DEBUG("client %s: cannot watch a socket: %s; closing", peer_.to_string().c_str(), std::strerror(errno));
      server_ = Side{};
      break;  // a resource of this host, like EMFILE above: the channel is not failed
    }
    if (r.status == ConnectStatus::Connected) {
      on_connected();
      return;
    }
    const uint64_t deadline = loop_.now_ms() + uint64_t{config.connect_timeout_s} * 1000u;
    loop_.timers().schedule(timer_, deadline, [this] { on_connect_result(ETIMEDOUT); });
    return;
  }
  if (pick_) core::release(worker_.shared().table, pick_->group, pick_->channel);
  pick_.reset();
  worker_.shared().table.header.refused_total.fetch_add(1, std::memory_order_relaxed);
  BALANCE_DEBUG("client %s: no channel answered, closing", peer_.to_string().c_str());
  close(EndReason::NoChannel);
}

// The connect to pick_ ended: 0 = connected, otherwise the reason it failed.
void Session::on_connect_result(int error) {
  if (error == 0) {
    on_connected();
    return;
  }
  fail_current(error);
  try_next_channel();
}

// Books the failure of the connect to pick_ and forgets its socket.
void Session::fail_current(int error) {
  loop_.timers().cancel(timer_);
  loop_.close(server_.fd);
  server_ = Side{};
  BALANCE_DEBUG("client %s: connect to %s (group %u channel %u) failed: %s", peer_.to_string().c_str(),
                pick_->endpoint.to_string().c_str(), pick_->group, pick_->channel, std::strerror(error));
  if (selector_.failed(*pick_)) {
    log::write(log::Level::Notice, "channel %u of group %u disabled after a failure (-a): re-enable it by hand",
               pick_->channel, pick_->group);
  }
  pick_.reset();
}

void Session::on_connected() {
  loop_.timers().cancel(timer_);
  selector_.connected(*pick_);
  state_ = State::Relaying;
  BALANCE_DEBUG("client %s: connected to %s (group %u channel %u)", peer_.to_string().c_str(),
                pick_->endpoint.to_string().c_str(), pick_->group, pick_->channel);
  send_proxy_header();  // (the client socket has TCP_NODELAY and SO_KEEPALIVE from the listener)
  const unsigned idle = worker_.shared().config.idle_timeout_s;
  last_active_ms_ = loop_.now_ms();
  if (idle > 0) loop_.timers().schedule(timer_, last_active_ms_ + idle * 1000u, [this] { on_idle_timer(); });
  pump();
  // The handshake's last ACK was held back to ride on the first bytes to the server. When the
  // client had nothing to send yet, it may in the rest of this batch of events; after that the
  // ACK goes alone, so a server that speaks first can accept without waiting.
  if (state_ == State::Relaying && !upstream_.wrote_any()) {
    loop_.defer([this] {
      if (state_ == State::Relaying && !upstream_.wrote_any()) send_pending_ack(server_.fd.get());
    });
  }
}

// Holding the handshake's ACK puts the server socket in delayed-ACK mode, and so does the first
// send within 40 ms of the SYN-ACK that holding it implies (a plain connect would still ACK at
// once there). A server answering in two small writes with Nagle on would then wait for the
// delayed-ACK timer (about 40 ms) before its second, where through a plain connection it does
// not. Hence quick ACKs again when the server first has something to read, before reading it:
// the read then sends the ACK such a server waits for, and no ACK the read would not have sent.
// A server whose FIN is in waits for nothing (the FIN pushed out what Nagle held), so a reply
// that came whole with the FIN (HTTP/1.0, say) costs no syscall for this.
void Session::quick_acks_from_first_reply() {
  if (quick_acks_restored_ || !server_.readable) return;
  quick_acks_restored_ = true;
  if (!server_.fin) send_pending_ack(server_.fd.get());
}

// With --proxy-protocol, the backend first learns who the client is and which address it reached.
void Session::send_proxy_header() {
  const cli::ProxyProtocol version = worker_.shared().config.proxy_protocol;
  if (version == cli::ProxyProtocol::None) return;
  const core::Endpoint local = local_endpoint(client_.fd.get()).value_or(core::Endpoint{});
  upstream_.queue_first(version == cli::ProxyProtocol::V1 ? proxy_header_v1(peer_, local) : proxy_header_v2(peer_, local));
}

void Session::on_events(SideId id, uint32_t events) {
  if (state_ == State::Closed) return;  // closed earlier in this batch
  if (state_ == State::Connecting) {
    if (id == SideId::Client) {
      client_.note(events);  // relayed once connected (edge-triggered: this edge will not repeat)
      return;
    }
    // Plain writability means connected; only an error or hang-up needs SO_ERROR for the reason.
    if (events & (EPOLLERR | EPOLLHUP)) {
      const int err = socket_error(server_.fd.get());
      on_connect_result(err != 0 ? err : ECONNREFUSED);
    } else if (events & EPOLLOUT) {
      server_.note(events);
      on_connect_result(0);
    }
    return;
  }
  (id == SideId::Client ? client_ : server_).note(events);
  pump();
}

void Session::pump() {
  auto& channel = worker_.shared().table.groups[pick_->group].channels[pick_->channel];
  const bool dump = worker_.shared().dump;
  quick_acks_from_first_reply();
  const PumpStatus up = upstream_.pump(worker_.buffers(), &channel.sent, dump, downstream_.done());
  const PumpStatus down = up == PumpStatus::Failed
                              ? PumpStatus::Failed
                              : downstream_.pump(worker_.buffers(), &channel.rcvd, dump, upstream_.done());
  const bool up_moved = upstream_.moved_since_last_check();  // both flags are read and reset
  const bool down_moved = downstream_.moved_since_last_check();
  if (up_moved || down_moved) {
    last_active_ms_ = loop_.now_ms();
    queued_at_idle_check_ = 0;  // the idle timer's next look starts afresh
  }
  if (!first_end_) {
    if (upstream_.source_ended()) first_end_ = SideId::Client;
    else if (downstream_.source_ended()) first_end_ = SideId::Server;
  }
  if (up == PumpStatus::Failed || down == PumpStatus::Failed) {
    const int err = up == PumpStatus::Failed ? upstream_.error() : downstream_.error();
    BALANCE_DEBUG("client %s: aborted: %s", peer_.to_string().c_str(), std::strerror(err));
    close(reason_for_failure());
  } else if (const auto reset = reset_after_end()) {
    BALANCE_DEBUG("client %s: %s after the end of its stream", peer_.to_string().c_str(), to_string(*reset));
    close(*reset);
  } else if (upstream_.done() && downstream_.done()) {
    BALANCE_DEBUG("client %s: finished", peer_.to_string().c_str());
    // Whoever ended their stream first closed the connection; the other only followed.
    close(first_end_ == SideId::Client ? EndReason::ClientClosed : EndReason::ServerClosed);
  }
}

// A peer whose stream ended is read no more, so a reset it sends later shows only as an error
// event on its socket; the other peer must still get it, and the session end, even if neither
// sends anything again.
std::optional<EndReason> Session::reset_after_end() {
  const std::pair<Side*, EndReason> ended[] = {
      {upstream_.source_ended() ? &client_ : nullptr, EndReason::ClientReset},
      {downstream_.source_ended() ? &server_ : nullptr, EndReason::ServerReset},
  };
  for (const auto& [side, reason] : ended) {
    if (side == nullptr || !side->error) continue;
    side->error = false;  // read once: SO_ERROR clears it
    if (socket_error(side->fd.get()) != 0) return reason;
  }
  return std::nullopt;
}

// Traffic only stamps last_active_ms_; the timer, when it fires, re-arms for the time left.
// When nothing went through balance for -T seconds, bytes may still be on their way out of the
// kernel's send queues to a slow peer: while what is queued shrinks, the connection is not idle.
// One whose queued bytes no peer took any of for -T seconds is reset, not closed with a FIN, so
// that no peer takes the cut stream for a complete one.
void Session::on_idle_timer() {
  const uint64_t idle_ms = uint64_t{worker_.shared().config.idle_timeout_s} * 1000u;
  const uint64_t now = loop_.now_ms();
  if (now < last_active_ms_ + idle_ms) {
    loop_.timers().schedule(timer_, last_active_ms_ + idle_ms, [this] { on_idle_timer(); });
    return;
  }
  const size_t queued = queued_for_peers();
  if (queued != 0 && queued != queued_at_idle_check_) {
    queued_at_idle_check_ = queued;
    last_active_ms_ = now;
    loop_.timers().schedule(timer_, now + idle_ms, [this] { on_idle_timer(); });
    return;
  }
  BALANCE_DEBUG("client %s: idle timeout%s", peer_.to_string().c_str(), queued != 0 ? " (peer stalled)" : "");
  close(EndReason::IdleTimeout, queued != 0);
}

// The bytes relayed that no peer has acknowledged yet: in balance's buffers and pipes, and in the
// kernel's send queues.
size_t Session::queued_for_peers() const {
  size_t n = upstream_.buffered() + downstream_.buffered();
  for (const Side* side : {&client_, &server_}) {
    if (side->fd) n += unacked_bytes(side->fd.get());
  }
  return n;
}

// Which peer's error failed the relay: a read error is its source's, a write error its destination's.
EndReason Session::reason_for_failure() const {
  const bool up_failed = upstream_.error() != 0;
  const Direction& d = up_failed ? upstream_ : downstream_;
  const bool client_side = up_failed == d.failed_at_source();  // upstream reads the client, writes the server
  return client_side ? EndReason::ClientReset : EndReason::ServerReset;
}

void Session::log_end(EndReason reason) const {
  const uint64_t duration = loop_.now_ms() - started_ms_;
  if (pick_) {
    log::write(log::Level::Info, "conn client=%s group=%u channel=%u backend=%s duration_ms=%llu sent=%llu rcvd=%llu end=%s",
               peer_.to_string().c_str(), pick_->group, pick_->channel, pick_->endpoint.to_string().c_str(),
               static_cast<unsigned long long>(duration), static_cast<unsigned long long>(upstream_.bytes()),
               static_cast<unsigned long long>(downstream_.bytes()), to_string(reason));
  } else {
    log_unserved(peer_, duration, reason);
  }
}

void log_unserved(const core::Endpoint& peer, uint64_t duration_ms, EndReason reason) {
  log::write(log::Level::Info, "conn client=%s group=- channel=- backend=- duration_ms=%llu sent=0 rcvd=0 end=%s",
             peer.to_string().c_str(), static_cast<unsigned long long>(duration_ms), to_string(reason));
}

// After both streams ended (`reason`), gives the server socket to the worker's pool for a later
// connect if its connection is over (disconnect_if_over()); false if the caller is to close it.
bool Session::keeps_server_socket(EndReason reason) {
  const auto& config = worker_.shared().config;
  if ((reason != EndReason::ClientClosed && reason != EndReason::ServerClosed) || config.out_bind ||
      !worker_.keeps_sockets() || !disconnect_if_over(server_.fd.get())) {
    return false;
  }
  worker_.sockets().keep(std::move(server_.fd), socket_kind(pick_->endpoint, config.loopback_cc));
  return true;
}

// Ends the session. After a reset, each socket is reset rather than closed with a FIN, so a
// peer's reset reaches the other peer.
void Session::close(EndReason reason, bool reset) {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  if (worker_.shared().config.log_conns) log_end(reason);
  const bool abort = reset || reason == EndReason::ClientReset || reason == EndReason::ServerReset;
  loop_.timers().cancel(timer_);
  for (Side* side : {&client_, &server_}) {
    if (!side->fd) continue;
    if (abort) set_reset_on_close(side->fd.get());
    if (side == &server_ && !abort && keeps_server_socket(reason)) continue;
    loop_.close(side->fd);  // takes it out of epoll too (EventLoop::close)
  }
  worker_.retire(*this);
}

}  // namespace balance::net
