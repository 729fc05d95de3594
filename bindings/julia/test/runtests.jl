# The Julia binding's test suite, for a machine with Julia 1.10+ and a built
# libwscore (ENV["WSCORE_LIBRARY"], or found in the repository's build tree):
#     julia --project=bindings/julia -e 'using Pkg; Pkg.test()'
# Every server listens on 127.0.0.1 port 0; a watchdog ends a hung run.
using Test
using Sockets, SHA, Base64
using WSCore
using WSCore.WebSockets
const WS = WSCore.WebSockets

const WATCHDOG = Timer(600) do _
    println(stderr, "runtests.jl: still running after 600 s; giving up")
    exit(2)
end

echo_handler(ws) = for msg in ws
    send(ws, msg)
end

url_of(s, target="/") = "ws://" * WS.server_addr(s) * target

caught(f) = try
    f()
    nothing
catch e
    e
end

# Each connection of the many-tasks test holds four descriptors in this process
# (a socket and a wake-up eventfd on each side): raise the soft limit to the
# hard one, as tests/python/conftest.py does. Returns the soft limit.
function raise_fd_limit()
    Sys.islinux() || return 1024
    lim = zeros(UInt64, 2)                  # struct rlimit { rlim_t cur, max; }
    RLIMIT_NOFILE = Cint(7)
    ccall(:getrlimit, Cint, (Cint, Ptr{UInt64}), RLIMIT_NOFILE, lim) == 0 || return 1024
    if lim[1] < lim[2]
        lim[1] = lim[2]
        ccall(:setrlimit, Cint, (Cint, Ptr{UInt64}), RLIMIT_NOFILE, lim)
        ccall(:getrlimit, Cint, (Cint, Ptr{UInt64}), RLIMIT_NOFILE, lim)
    end
    return Int(min(lim[1], UInt64(1) << 30))
end

# A TCP server that answers the upgrade by hand and then behaves badly, for the
# failures a well-behaved wscore peer never produces.
function raw_server(behave)
    srv = listen(ip"127.0.0.1", 0)
    _, port = getsockname(srv)
    task = @async try
        while true
            sock = accept(srv)
            @async try
                behave(sock)
            catch
            end
        end
    catch
    end
    return srv, Int(port), task
end

function raw_upgrade(sock)
    key = ""
    while true
        line = readline(sock)
        isempty(line) && break
        m = match(r"^sec-websocket-key:\s*(\S+)"i, line)
        m === nothing || (key = m[1])
    end
    accept = base64encode(sha1(key * "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
    write(sock, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" *
                "Sec-WebSocket-Accept: $accept\r\n\r\n")
end

@testset "WSCore.WebSockets" begin
    server = WS.listen!(echo_handler, "127.0.0.1", 0; suppress_close_error=true)
    url = url_of(server)
    @test WS.port(server) > 0
    @test WS.server_addr(server) == "127.0.0.1:$(WS.port(server))"   # HTTP.jl 2.x: host:port
    @test isopen(server)

    @testset "echo: text, binary, empty, large" begin
        WS.open(url) do ws
            for msg in ("hello", "naïve ✓ 日本", "", "x"^70_000, SubString("abcdef", 2, 4))
                @test send(ws, msg) == sizeof(msg)   # HTTP.jl 2.x: the payload bytes sent
                got = receive(ws)
                @test got isa String
                @test got == msg
            end
            for msg in (UInt8[], UInt8[0, 255], rand(UInt8, 1 << 20), view(UInt8[1, 2, 3, 4], 2:3))
                @test send(ws, msg) == length(msg)
                got = receive(ws)
                @test got isa Vector{UInt8}
                @test got == msg
            end
        end
    end

    @testset "fragments from iterables; send_batch" begin
        WS.open(url) do ws
            @test send(ws, ["frag", "men", "ted"]) == 10
            @test receive(ws) == "fragmented"
            send(ws, (UInt8[1], UInt8[2, 3], UInt8[]))
            @test receive(ws) == UInt8[1, 2, 3]
            @test send(ws, String[]) == 0            # HTTP.jl: an empty iterable is an empty text message
            @test receive(ws) == ""
            send(ws, ("é"[1:1], "\u00e9"))           # fragments are text as a whole
            @test receive(ws) == "éé"
            send(ws, (i for i in 1:3))               # other values are sent as their text
            @test receive(ws) == "123"
            @test WS.send_batch(ws, ["a", UInt8[2], "c"]) == 3
            @test receive(ws) == "a"
            @test receive(ws) == UInt8[2]
            @test receive(ws) == "c"
            @test_throws ArgumentError WS.send_batch(ws, [1])
        end
    end

    @testset "open(f) returns f's value and frees the connection" begin
        ws_ref = Ref{Any}()
        v = WS.open(url) do ws
            ws_ref[] = ws
            send(ws, "v")
            receive(ws)
        end
        @test v == "v"
        @test WS.isclosed(ws_ref[])
        @test ws_ref[].ptr == C_NULL                # freed, not left to the finalizer
        @test_throws WebSocketError send(ws_ref[], "after")
        @test_throws WebSocketError ping(ws_ref[])
    end

    @testset "open(url) without f; close codes both ways" begin
        ws = WS.open(url)
        @test isopen(ws)
        @test ws.handshake_response === ws.response   # HTTP.jl 2.x's field names
        @test WS.isupgrade(ws.response)
        ping(ws, "are you there")
        pong(ws)
        @test_throws ArgumentError ping(ws, rand(UInt8, 126))
        send(ws, "after ping")
        @test receive(ws) == "after ping"
        @test_throws ArgumentError close(ws, WS.CloseFrameBody(1000, "x"^124))
        close(ws, WS.CloseFrameBody(4001, "custom"))
        @test WS.isclosed(ws)
        err = caught(() -> receive(ws))
        @test err isa WebSocketError
        @test err.message.code == 4001             # the echo server answers with the same code
        @test err.message.status == 4001           # HTTP.jl 1.x field names
        @test err.message.message == "custom"
        @test !WS.isok(err)
        close(ws)                                   # closing twice is harmless
        @test collect(ws) == []                     # our own close: iteration ends quietly
        @test_throws WebSocketError pong(ws)

        # HTTP.jl 2.x: a code a close frame cannot carry goes out as 1002.
        ws = WS.open(url)
        close(ws, WS.CloseFrameBody(1006, "not sendable"))
        e = caught(() -> receive(ws))
        @test e isa WebSocketError && e.message.code == 1002
        ws = WS.open(url)
        close(ws, nothing)                          # HTTP.jl 2.x's default argument
        @test WS.isok(caught(() -> receive(ws)))
    end

    @testset "server close codes reach the client; messages before the close stay readable" begin
        s = WS.listen!("127.0.0.1", 0) do ws
            target = ws.request.target
            send(ws, "one")
            send(ws, "two")
            if target == "/normal"
                close(ws)
            elseif target == "/custom"
                close(ws, WS.CloseFrameBody(4002, "bye"))
            else
                close(ws; statusnumber=1001, freereason="going")   # WebSockets.jl spelling
            end
        end
        got = String[]
        WS.open(url_of(s, "/normal")) do ws
            for m in ws
                push!(got, m)
            end
        end
        @test got == ["one", "two"]
        err = caught() do
            WS.open(url_of(s, "/custom"); suppress_close_error=true) do ws
                for m in ws
                end
            end
        end
        @test err isa WebSocketError && err.message.code == 4002 && err.message.reason == "bye"
        WS.open(url_of(s, "/away")) do ws
            @test receive(ws) == "one"
            @test receive(ws) == "two"
            e = caught(() -> receive(ws))
            @test e isa WebSocketError && e.message.code == 1001 && WS.isok(e)
        end
        close(s)
    end

    @testset "replies to our last messages arrive before the close and stay readable" begin
        # The server's answer to our close waits until its handler has read (and
        # answered) what we sent before it; close(ws) keeps what arrives meanwhile.
        s = WS.listen!("127.0.0.1", 0) do ws
            for m in ws
                sleep(0.05)                          # a slow handler
                send(ws, "re:" * m)
            end
        end
        ws = WS.open(url_of(s))
        send(ws, "one")
        send(ws, "two")
        close(ws)
        @test WS.isclosed(ws)
        @test isready(ws)
        @test receive(ws) == "re:one"
        @test receive(ws) == "re:two"
        e = caught(() -> receive(ws))
        @test e isa WebSocketError && e.message.code == 1000
        @test !isready(ws)
        close(s)
    end

    @testset "a dropped connection is 1006" begin
        srv, port, task = raw_server(sock -> (raw_upgrade(sock); close(sock)))
        ws = WS.open("ws://127.0.0.1:$port/")
        err = caught(() -> receive(ws))
        @test err isa WebSocketError && err.message.code == 1006
        @test_throws WebSocketError [m for m in ws]   # iteration rethrows abnormal closes
        close(ws)
        close(srv)
    end

    @testset "server sees the request; subprotocols; query" begin
        seen = Channel{Any}(1)
        s = WS.listen!("127.0.0.1", 0; subprotocols=["chat", "superchat"]) do ws
            put!(seen, (ws.request, ws.handshake_request, WS.subprotocol(ws)))
        end
        WS.open(url_of(s, "/room?x=1"); headers=["X-Token" => "abc"], subprotocols=["other", "superchat"]) do ws
            @test WS.subprotocol(ws) == "superchat"
            @test ws.response.status == 101
            @test WS.header(ws.response, "sec-websocket-protocol") == "superchat"
            @test ws.request.target == "/room?x=1"
        end
        req, req2, sp = take!(seen)
        @test req2 === req
        # HTTP.jl 1.x's way of offering subprotocols: the header.
        WS.open(url_of(s); headers=["Sec-WebSocket-Protocol" => "nope, chat"]) do ws
            @test WS.subprotocol(ws) == "chat"
        end
        take!(seen)
        # HTTP.jl's query keyword, percent-encoded; http:// reads as ws://.
        WS.open(replace(url_of(s, "/q?a=1"), "ws://" => "http://"); query=["b" => "x y", "c" => "é&"]) do ws
            @test ws.request.target == "/q?a=1&b=x%20y&c=%C3%A9%26"
        end
        @test take!(seen)[1].query == "a=1&b=x%20y&c=%C3%A9%26"
        @test_throws ArgumentError WS.open(url_of(s); headers=["Sec-WebSocket-Key" => "x"])
        @test sp == "superchat"
        @test req.method == "GET"
        @test req.target == "/room?x=1"
        @test req.path == "/room"
        @test req.query == "x=1"
        @test WS.header(req, "x-token") == "abc"
        @test WS.header(req.headers, "X-TOKEN") == "abc"
        @test WS.header(req, "absent", "none") == "none"
        @test WS.hasheader(req, "Upgrade", "websocket")
        @test WS.isupgrade(req)
        @test req.headers isa Vector{Pair{String,String}}
        close(s)
    end

    @testset "origins: same-origin by default, check_origin, allowlist" begin
        # HTTP.jl 2.x's default: browsers only from the request's own host:port.
        s = WS.listen!(echo_handler, "127.0.0.1", 0)
        own = "http://" * WS.server_addr(s)
        WS.open(url_of(s); headers=["Origin" => own]) do ws
            send(ws, "same")
            @test receive(ws) == "same"
        end
        for bad in ("http://evil.example", "http://127.0.0.1:1", "null")
            err = caught(() -> WS.open(url_of(s); headers=["Origin" => bad]))
            @test err isa WS.WSCoreError && err.name == "WS_EHANDSHAKE" && err.status == 403
        end
        WS.open(url_of(s)) do ws                 # no Origin: not a browser, let in
            send(ws, "no origin")
            @test receive(ws) == "no origin"
        end
        close(s)

        # check_origin(request, origin), origin `nothing` when absent (HTTP.jl 2.x).
        asked = Any[]
        s = WS.listen!(echo_handler, "127.0.0.1", 0; subprotocols=["chat"],
                       check_origin = (req, o) -> (push!(asked, (req.path, o)); o != "http://evil.example"))
        err = caught(() -> WS.open(url_of(s, "/a"); headers=["Origin" => "http://evil.example"]))
        @test err isa WS.WSCoreError && err.status == 403
        WS.open(url_of(s, "/b"); headers=["Origin" => "http://fine.example"], subprotocols=["chat"]) do ws
            @test WS.subprotocol(ws) == "chat"
            send(ws, "checked")
            @test receive(ws) == "checked"
        end
        WS.open(url_of(s, "/c")) do ws
        end
        @test asked == [("/a", "http://evil.example"), ("/b", "http://fine.example"), ("/c", nothing)]
        close(s)

        # check_origin(request); a result that is not a Bool refuses the client.
        s = WS.listen!(echo_handler, "127.0.0.1", 0; check_origin = req -> WS.header(req, "X-Key") == "k")
        WS.open(url_of(s); headers=["X-Key" => "k", "Origin" => "http://anywhere.example"]) do ws
        end
        @test caught(() -> WS.open(url_of(s))) isa WS.WSCoreError
        close(s)
        s = WS.listen!(echo_handler, "127.0.0.1", 0; check_origin = req -> 1)
        @test caught(() -> WS.open(url_of(s))).status == 403
        close(s)

        # An allowlist, checked by the C library.
        s = WS.listen!(echo_handler, "127.0.0.1", 0; origins=["http://good.example"])
        err = caught(() -> WS.open(url_of(s); headers=["Origin" => "http://evil.example"]))
        @test err isa WS.WSCoreError && err.name == "WS_EHANDSHAKE" && err.status == 403
        WS.open(url_of(s); headers=["Origin" => "http://good.example"]) do ws
            send(ws, "ok")
            @test receive(ws) == "ok"
        end
        close(s)
        @test_throws ArgumentError WS.listen!(echo_handler, "127.0.0.1", 0; check_origin="yes")
    end

    @testset "thousands of connections, one task each, all open at once on one thread" begin
        limit = raise_fd_limit()
        n = clamp((limit - 300) ÷ 4, 100, 2000)
        n < 2000 && @info "descriptor limit $limit: testing $n connections at once instead of 2000"
        results = Vector{String}(undef, n)
        opened = Ref(0)
        threads = Set{Int}()
        deadline = time() + 120
        @sync for i in 1:n
            @async WS.open(url) do ws
                push!(threads, Threads.threadid())
                opened[] += 1
                # Every connection stays open, its task waiting, until all are:
                # n receives then wait together in the scheduler.
                while opened[] < n && time() < deadline
                    sleep(0.01)
                end
                t = @async receive(ws)
                yield()
                send(ws, "m$i")
                results[i] = fetch(t)
            end
        end
        @test opened[] == n
        @test results == ["m$i" for i in 1:n]
        @test length(threads) == 1               # @async tasks share this thread: nothing parked it
    end

    @testset "a receive waiting in the scheduler does not block other tasks" begin
        s = WS.listen!("127.0.0.1", 0) do ws
            sleep(0.5)
            send(ws, "late")
            receive(ws)
        end
        WS.open(url_of(s)) do ws
            t = @async receive(ws)
            ticks = 0
            while !istaskdone(t)
                ticks += 1
                sleep(0.01)
            end
            @test fetch(t) == "late"
            @test ticks >= 10                    # this task ran while the other waited
        end
        close(s)
    end

    @testset "close while another task waits in receive" begin
        WS.open(url) do ws
            t = @async [m for m in ws]           # ends quietly after our close
            sleep(0.1)
            close(ws)
            @test fetch(t) == []
        end
    end

    @testset "backpressure: sends yield while the queue is full" begin
        s = WS.listen!(echo_handler, "127.0.0.1", 0; send_queue_limit=64 * 1024)
        WS.open(url_of(s); send_queue_limit=64 * 1024, receive_queue_limit=256 * 1024) do ws
            chunk = rand(UInt8, 64 * 1024)
            n = 256                                # 16 MiB each way
            reader = @async begin
                ok = 0
                for _ in 1:n
                    receive(ws) == chunk && (ok += 1)
                end
                ok
            end
            for _ in 1:n
                send(ws, chunk)
            end
            @test fetch(reader) == n
        end
        close(s)
    end

    @testset "concurrent fragmented sends are serialised" begin
        WS.open(url) do ws
            @sync for k in 1:8
                @async send(ws, ("t$k-", "a", "b", "c"))
            end
            got = sort([receive(ws) for _ in 1:8])
            @test got == sort(["t$k-abc" for k in 1:8])
        end
    end

    @testset "isready" begin
        WS.open(url) do ws
            @test !isready(ws)
            send(ws, "r")
            deadline = time() + 5
            while !isready(ws) && time() < deadline
                sleep(0.01)
            end
            @test isready(ws)
            @test receive(ws) == "r"
            @test !isready(ws)
        end
    end

    @testset "limits and timeouts" begin
        small = WS.listen!(echo_handler, "127.0.0.1", 0; maxframesize=1000, suppress_close_error=true)
        WS.open(url_of(small)) do ws
            send(ws, "y"^1000)
            @test receive(ws) == "y"^1000
            send(ws, "y"^1001)
            e = caught(() -> receive(ws))
            @test e isa WebSocketError && e.message.code == 1009
        end
        close(small)

        for kw in ((; readtimeout=0.3), (; read_idle_timeout=0.3))   # HTTP.jl 1.x and 2.x names
            idle = WS.listen!(echo_handler, "127.0.0.1", 0; kw...)
            WS.open(url_of(idle)) do ws
                t0 = time()
                e = caught(() -> receive(ws))
                @test e isa WebSocketError && e.message.code == 1001
                @test 0.2 < time() - t0 < 5
            end
            close(idle)
        end

        # A peer that accepts TCP but never answers the upgrade.
        srv, port, _ = raw_server(sock -> sleep(10))
        for kw in ((; connect_timeout=0.3), (; request_timeout=0.3), (; connect_timeout=30, request_timeout=0.3))
            t0 = time()
            e = caught(() -> WS.open("ws://127.0.0.1:$port/"; kw...))
            @test e isa WS.WSCoreError && e.name == "WS_ETIMEDOUT"
            @test time() - t0 < 5
        end
        close(srv)

        @test_throws ArgumentError WS.open(url; connect_timeout=-1)
        @test_throws ArgumentError WS.open(url; maxframesize=0)
        @test_throws ArgumentError WS.open(url; sslconfig=:something)
    end

    @testset "connection errors" begin
        gone = WS.listen!(echo_handler, "127.0.0.1", 0)
        port = WS.port(gone)
        close(gone)
        e = caught(() -> WS.open("ws://127.0.0.1:$port/"))
        @test e isa WS.WSCoreError && e.name == "WS_ECONNREFUSED"
        @test occursin("refused", sprint(showerror, e))
        @test_throws ArgumentError WS.open("ftp://127.0.0.1:$port/")
        e = caught(() -> WS.open("ws://"))
        @test e isa WS.WSCoreError && e.name == "WS_EURL"
        @test_throws ArgumentError WS.open("ws://127.0.0.1:$port/\0")
        @test_throws ArgumentError WS.listen!(echo_handler, "127.0.0.1", 70000)
    end

    @testset "wss://" begin
        script = joinpath(@__DIR__, "..", "..", "..", "tests", "tls", "make_certs.sh")
        if Sys.which("openssl") === nothing || !isfile(script)
            @test_skip "wss:// needs openssl and tests/tls/make_certs.sh"
        else
            dir = mktempdir()
            run(`sh $script $dir`)
            pem(name) = joinpath(dir, name)
            for tls in ((; tls_config=(certfile=pem("server.pem"), keyfile=pem("server.key"))),
                        (; certfile=pem("server.pem"), keyfile=pem("server.key")),
                        (; cert_pem=read(pem("server.pem"), String), key_pem=read(pem("server.key"), String)))
                s = WS.listen!(echo_handler, "127.0.0.1", 0; tls...)
                wss = "wss://" * WS.server_addr(s) * "/"
                WS.open(wss; cafile=pem("ca.pem")) do ws
                    send(ws, "secret")
                    @test receive(ws) == "secret"
                end
                e = caught(() -> WS.open(wss))        # the test CA is not in the system store
                @test e isa WS.WSCoreError && e.name == "WS_ETLS"
                WS.open(wss; require_ssl_verification=false) do ws
                    send(ws, UInt8[1, 2])
                    @test receive(ws) == UInt8[1, 2]
                end
                close(s)
            end
            @test_throws ArgumentError WS.listen!(echo_handler, "127.0.0.1", 0; tls_config=:config_object)
            @test_throws ArgumentError WS.listen!(echo_handler, "127.0.0.1", 0; tls_config=(certfil="x",))
            e = caught(() -> WS.listen!(echo_handler, "127.0.0.1", 0; certfile=pem("server.pem")))
            @test e isa WS.WSCoreError && e.name == "WS_ETLS"   # a certificate without its key
        end
    end

    @testset "WebSockets.jl habits" begin
        WS.open(url) do ws
            @test writeguarded(ws, "compat")
            data, ok = readguarded(ws)
            @test ok && String(data) == "compat"
            @test write(ws, UInt8[7, 8]) == 2
            @test read(ws) == UInt8[7, 8]
            close(ws)
            @test !writeguarded(ws, "late")
            @test readguarded(ws) == (UInt8[], false)
        end
    end

    @testset "listen: blocking, listenany, serve!" begin
        t = @async WS.listen(echo_handler, "127.0.0.1", 0)
        sleep(0.2)
        @test !istaskdone(t)
        schedule(t, InterruptException(); error=true)
        @test_throws TaskFailedException wait(t)

        s = WS.serve!(echo_handler, "127.0.0.1", 1; listenany=true)   # port ignored: a free one
        @test WS.port(s) != 1 && WS.port(s) > 0
        WS.open(url_of(s)) do ws
            send(ws, "any")
            @test receive(ws) == "any"
        end
        close(s)
    end

    @testset "server close: clients see 1001, handlers finish" begin
        handled = Threads.Atomic{Int}(0)
        s = WS.listen!("127.0.0.1", 0) do ws
            for m in ws
                send(ws, m)
            end
            Threads.atomic_add!(handled, 1)
        end
        clients = [WS.open(url_of(s)) for _ in 1:5]
        foreach(c -> (send(c, "hi"); @test receive(c) == "hi"), clients)
        close(s)
        @test !isopen(s)
        @test handled[] == 5
        for c in clients
            e = caught(() -> receive(c))
            @test e isa WebSocketError && WS.isok(e)
            close(c)
        end
        close(s)                                  # closing twice is harmless

        s = WS.listen!(echo_handler, "127.0.0.1", 0)
        c = WS.open(url_of(s))
        WS.forceclose(s)
        @test caught(() -> receive(c)) isa WebSocketError
        close(c)
    end

    close(server)
    @test !isopen(server)
end
close(WATCHDOG)
