// One accepted client: choosing and connecting a channel (with failover), then relaying bytes
// both ways until both directions have ended, a side fails or resets, or the idle timeout strikes.
//
//   Connecting --connected--> Relaying --both directions done / error / idle--> Closed
//       |                                                                        ^
//       +--------------------- no channel answered ------------------------------+
//
// Threading: a Session lives and dies on its worker's loop thread. It never deletes itself:
// close() hands it to the worker, which destroys it after the current batch of events.
#pragma once

#include <cstdint>
#include <optional>

#include "core/endpoint.h"
#include "core/policy.h"
#include "net/loop.h"
#include "net/relay.h"
#include "net/timer_wheel.h"

namespace balance::net {

class Worker;

// How a session ended (the --log-conns "end" field).
enum class EndReason { ClientClosed, ServerClosed, ClientReset, ServerReset, IdleTimeout, NoChannel, Shed, Shutdown };
const char* to_string(EndReason r);

// The --log-conns line of a client no channel served (group, channel and backend "-").
void log_unserved(const core::Endpoint& peer, uint64_t duration_ms, EndReason reason);

class Session {
 public:
  Session(Worker& worker, Fd client, const core::Endpoint& peer);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Starts the first connect. May close the session at once (no channel answered).
  void start();
  // Closes the session now (the process is stopping).
  // A stop cuts the connection: both peers get a reset, so that neither takes the cut stream for
  // a complete one.
  void shutdown() { close(EndReason::Shutdown, true); }

  size_t index = 0;  // position in the worker's session list (owned by Worker)

 private:
  enum class State { Connecting, Relaying, Closed };
  enum class SideId { Client, Server };

  // Routes epoll events of one of the two sockets back to the session.
  class SideWatch final : public Watch {
   public:
    SideWatch(Session& s, SideId id) : session_(s), id_(id) {}
    void on_events(uint32_t events) override { session_.on_events(id_, events); }

   private:
    Session& session_;
    SideId id_;
  };

  void on_events(SideId id, uint32_t events);
  void try_next_channel();
  void on_connect_result(int error);
  void fail_current(int error);
  void on_connected();
  void send_proxy_header();
  void quick_acks_from_first_reply();
  void pump();
  void on_idle_timer();
  size_t queued_for_peers() const;
  std::optional<EndReason> reset_after_end();
  // Ends the session; `reset` (implied by a reset reason) resets both sockets instead of a FIN.
  void close(EndReason reason, bool reset = false);
  bool keeps_server_socket(EndReason reason);
  EndReason reason_for_failure() const;
  void log_end(EndReason reason) const;

  Worker& worker_;
  EventLoop& loop_;
  State state_ = State::Connecting;
  core::Endpoint peer_;
  core::Selector selector_;
  std::optional<core::Pick> pick_;  // the channel being tried, then the one in use
  Side client_;
  Side server_;
  SideWatch client_watch_{*this, SideId::Client};
  SideWatch server_watch_{*this, SideId::Server};
  Direction upstream_{client_, server_, log::Direction::FromClient};
  Direction downstream_{server_, client_, log::Direction::FromServer};
  TimerHook timer_;  // connect timeout while Connecting, idle timeout while Relaying
  uint64_t last_active_ms_ = 0;
  size_t queued_at_idle_check_ = 0;  // queued_for_peers() when the idle timer last found it > 0
  uint64_t started_ms_ = 0;
  std::optional<SideId> first_end_;  // the peer that ended its stream first
  bool quick_acks_restored_ = false;  // see quick_acks_from_first_reply()
};

}  // namespace balance::net
