// websocketpp echo server for the echo benchmark: its asio transport on one
// thread, every message back with its opcode. Prints "listening on PORT".
//   echo_wspp [PORT]
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include <cstdio>
#include <cstdlib>

using Server = websocketpp::server<websocketpp::config::asio>;

int main(int argc, char** argv) {
  Server s;
  s.clear_access_channels(websocketpp::log::alevel::all);
  s.clear_error_channels(websocketpp::log::elevel::all);
  s.init_asio();
  s.set_reuse_addr(true);
  s.set_max_message_size(64u << 20);
  // TCP_NODELAY once accepted (the socket-init handler runs before the socket is open).
  s.set_tcp_post_init_handler([&s](websocketpp::connection_hdl h) {
    websocketpp::lib::asio::error_code ec;
    s.get_con_from_hdl(h)->get_raw_socket().set_option(boost::asio::ip::tcp::no_delay(true), ec);
  });
  s.set_message_handler([&s](websocketpp::connection_hdl h, Server::message_ptr m) {
    websocketpp::lib::error_code ec;
    s.send(h, m->get_payload(), m->get_opcode(), ec);  // an error means the peer is gone
  });
  boost::asio::ip::tcp::endpoint ep(boost::asio::ip::make_address("127.0.0.1"),
                                    static_cast<unsigned short>(argc > 1 ? std::atoi(argv[1]) : 0));
  s.listen(ep);
  websocketpp::lib::asio::error_code ec;
  std::printf("listening on %d\n", s.get_local_endpoint(ec).port());
  std::fflush(stdout);
  s.start_accept();
  s.run();
}
