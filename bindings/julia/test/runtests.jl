# The Julia binding's test suite, for a machine with Julia 1.10+ and a built
# libwscore (ENV["WSCORE_LIBRARY"] or the repository's build tree).
using Test
using WSCore.WebSockets
const WS = WSCore.WebSockets

echo(ws) = for msg in ws
    send(ws, msg)
end

@testset "WSCore.WebSockets" begin
    server = WS.listen!(echo, "127.0.0.1", 0)
    url = "ws://127.0.0.1:$(WS.port(server))/"

    @testset "text, binary, empty, large" begin
        WS.open(url) do ws
            for msg in ("hello", "naïve ✓", "", "x"^70000)
                send(ws, msg)
                @test receive(ws) == msg
            end
            for msg in (UInt8[], UInt8[0, 255], rand(UInt8, 1 << 20))
                send(ws, msg)
                @test receive(ws) == msg
            end
        end
    end

    @testset "fragments from iterables" begin
        WS.open(url) do ws
            send(ws, ["frag", "men", "ted"])
            @test receive(ws) == "fragmented"
            send(ws, (UInt8[1], UInt8[2, 3]))
            @test receive(ws) == UInt8[1, 2, 3]
            @test_throws ArgumentError send(ws, ["a", UInt8[1]])
        end
    end

    @testset "open(f) returns f's value and closes" begin
        ws_ref = Ref{Any}()
        v = WS.open(url) do ws
            ws_ref[] = ws
            send(ws, "v")
            receive(ws)
        end
        @test v == "v"
        @test isclosed(ws_ref[])
    end

    @testset "ping and close codes" begin
        ws = WS.open(url)
        ping(ws, "are you there")
        pong(ws)
        send(ws, "after ping")
        @test receive(ws) == "after ping"
        close(ws, CloseFrameBody(4001, "custom"))
        @test isclosed(ws)
        err = try
            receive(ws)
        catch e
            e
        end
        @test err isa WebSocketError
        @test err.message.code == 4001
        @test err.message.status == 4001          # HTTP.jl 1.x field names
        @test err.message.message == "custom"
    end

    @testset "iteration ends quietly on a normal close" begin
        s2 = WS.listen!("127.0.0.1", 0) do ws
            send(ws, "one")
            send(ws, "two")
            close(ws)
        end
        got = String[]
        WS.open("ws://127.0.0.1:$(WS.port(s2))/") do ws
            for m in ws
                push!(got, m)
            end
        end
        @test got == ["one", "two"]
        close(s2)
    end

    @testset "server sees the request" begin
        seen = Channel{Any}(1)
        s3 = WS.listen!("127.0.0.1", 0) do ws
            put!(seen, ws.request)
        end
        WS.open("ws://127.0.0.1:$(WS.port(s3))/room?x=1"; headers=["X-Token" => "abc"]) do ws
            nothing
        end
        req = take!(seen)
        @test req.path == "/room"
        @test req.query == "x=1"
        @test WS.header(req, "x-token") == "abc"
        close(s3)
    end

    @testset "1,000 tasks on one thread" begin
        results = Vector{String}(undef, 1000)
        @sync for i in 1:1000
            @async WS.open(url) do ws
                send(ws, "m$i")
                results[i] = receive(ws)
            end
        end
        @test results == ["m$i" for i in 1:1000]
    end

    @testset "errors" begin
        @test_throws WS.WSCoreError WS.open("http://nope/")
        @test_throws WS.WSCoreError WS.open("ws://127.0.0.1:1/")
    end

    @testset "WebSockets.jl habits" begin
        WS.open(url) do ws
            @test writeguarded(ws, "compat")
            data, ok = readguarded(ws)
            @test ok && String(data) == "compat"
        end
    end

    close(server)
    @test !isopen(server)
end
