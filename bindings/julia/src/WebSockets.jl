"""
    WSCore.WebSockets

A drop-in for `HTTP.WebSockets` (HTTP.jl 2.x; 1.x habits accepted): `open`,
`listen`, `listen!`, `send`, `receive`, `ping`, `pong`, `close`, iteration,
`WebSocketError`, `CloseFrameBody`. Waiting happens in Julia's scheduler on each
connection's file descriptor (`FileWatching.poll_fd`), then a non-blocking
`ccall` takes the message: no OS thread is parked per connection.
"""
module WebSockets

using FileWatching
using ..LibWSCore: wsym, WS_OK, WS_EAGAIN, WS_ECLOSED, WS_ETIMEDOUT, WS_EHANDSHAKE, WS_ECANCELED,
                   WS_TEXT, WS_BINARY, WS_STATE_OPEN, WS_STATE_CLOSED, errname, strerror

export WebSocket, send, receive, ping, pong, isclosed, isok, CloseFrameBody, WebSocketError,
       WSCoreError, readguarded, writeguarded

# ---------------------------------------------------------------- errors

"""
    CloseFrameBody(code, reason)

A close code and reason. Also answers `status` and `message` (HTTP.jl 1.x names).
"""
struct CloseFrameBody
    code::Int
    reason::String
end
CloseFrameBody(code::Integer) = CloseFrameBody(Int(code), "")

function Base.getproperty(b::CloseFrameBody, s::Symbol)
    s === :status && return getfield(b, :code)
    s === :message && return getfield(b, :reason)
    return getfield(b, s)
end
Base.propertynames(::CloseFrameBody) = (:code, :reason, :status, :message)

"""
    WebSocketError(CloseFrameBody(code, reason))

Thrown by `receive` (and sends) once the connection is closed, normal closes
included (as HTTP.jl does). A dropped connection is 1006.
"""
struct WebSocketError <: Exception
    message::CloseFrameBody
end
Base.showerror(io::IO, e::WebSocketError) =
    print(io, "WebSocketError: ", e.message.code, " ", e.message.reason)

"""
    isok(e)

Whether an error is a normal close (1000 normal, 1001 going away, 1005 no status).
"""
isok(e) = e isa WebSocketError && e.message.code in (1000, 1001, 1005)

"""A failure of the C library other than a close: `name` is the WS_E* name."""
struct WSCoreError <: Exception
    code::Int
    name::String
    msg::String
    status::Int      # HTTP status of a failed handshake (0 otherwise)
end
Base.showerror(io::IO, e::WSCoreError) =
    print(io, "WSCoreError(", e.name, "): ", e.msg, e.status > 0 ? " (HTTP $(e.status))" : "")

# ---------------------------------------------------------------- handles

"""
    WebSocket

One connection. `ws.request` (server side) holds the upgrade request.
"""
mutable struct WebSocket
    ptr::Ptr{Cvoid}
    fd::RawFD
    client::Bool
    request::Any
    lock::ReentrantLock
    closebody::Union{Nothing,CloseFrameBody}
    function WebSocket(ptr::Ptr{Cvoid}, client::Bool)
        fd = ccall(wsym(:ws_fileno), Cint, (Ptr{Cvoid},), ptr)
        ws = new(ptr, RawFD(fd), client, nothing, ReentrantLock(), nothing)
        finalizer(release!, ws)  # a safety net; close/open(f) free deterministically
        return ws
    end
end

"""The upgrade request a server-side connection came with."""
struct Request
    method::String
    target::String
    path::String
    query::String
    headers::Vector{Pair{String,String}}
end

"""    header(req, name, default="")  — a request header, case-insensitive."""
function header(req::Request, name::AbstractString, default="")
    for (k, v) in req.headers
        lowercase(k) == lowercase(name) && return v
    end
    return default
end

function release!(ws::WebSocket)
    p = ws.ptr
    if p != C_NULL
        ws.closebody === nothing && (ws.closebody = closebody(ws))
        ws.ptr = C_NULL
        ccall(wsym(:ws_free), Cvoid, (Ptr{Cvoid},), p)
    end
    return nothing
end

function handle(ws::WebSocket)
    p = ws.ptr
    p == C_NULL && throw(WebSocketError(something(ws.closebody, CloseFrameBody(1006, "released"))))
    return p
end

cstr(p::Cstring) = p == C_NULL ? "" : unsafe_string(p)

function closebody(ws::WebSocket)
    p = ws.ptr
    p == C_NULL && return something(ws.closebody, CloseFrameBody(1006, ""))
    code = ccall(wsym(:ws_close_code), Cint, (Ptr{Cvoid},), p)
    reason = cstr(ccall(wsym(:ws_close_reason), Cstring, (Ptr{Cvoid},), p))
    return CloseFrameBody(code == 0 ? 1006 : Int(code), reason)
end

function throwerr(ws::Union{WebSocket,Nothing}, rc::Integer)
    rc == WS_ECLOSED && ws !== nothing && throw(WebSocketError(closebody(ws)))
    throw(WSCoreError(Int(rc), errname(rc), strerror(rc), 0))
end

"""Waits in the scheduler until `fd` is readable (or `timeout` seconds pass)."""
function wait_readable(fd::RawFD, timeout::Real)
    ev = poll_fd(fd, timeout; readable=true)
    return ev.readable
end

# ---------------------------------------------------------------- options

function make_options(; headers=Pair{String,String}[], subprotocols=nothing, maxframesize=nothing,
                      connect_timeout=10, readtimeout=nothing, close_timeout=5, origins=nothing,
                      check_origin=nothing, send_timeout=0, require_ssl_verification=true,
                      cafile=nothing, capath=nothing, certfile=nothing, keyfile=nothing,
                      sslconfig=nothing, kw...)
    o = ccall(wsym(:ws_options_new), Ptr{Cvoid}, ())
    o == C_NULL && throw(OutOfMemoryError())
    ok(rc) = rc == WS_OK || (ccall(wsym(:ws_options_free), Cvoid, (Ptr{Cvoid},), o); throwerr(nothing, rc))
    ok(ccall(wsym(:ws_options_set_connect_timeout), Cint, (Ptr{Cvoid}, Cint), o, round(Cint, 1000 * connect_timeout)))
    ok(ccall(wsym(:ws_options_set_close_timeout), Cint, (Ptr{Cvoid}, Cint), o, round(Cint, 1000 * close_timeout)))
    # Sends never block an OS thread: a full queue answers WS_EAGAIN and the task yields.
    ok(ccall(wsym(:ws_options_set_send_timeout), Cint, (Ptr{Cvoid}, Cint), o, Cint(send_timeout)))
    if maxframesize !== nothing
        ok(ccall(wsym(:ws_options_set_max_message_size), Cint, (Ptr{Cvoid}, UInt64), o, UInt64(maxframesize)))
    end
    if readtimeout !== nothing && readtimeout > 0
        ok(ccall(wsym(:ws_options_set_idle_timeout), Cint, (Ptr{Cvoid}, Cint), o, round(Cint, 1000 * readtimeout)))
    end
    for (k, v) in headers
        ok(ccall(wsym(:ws_options_add_header), Cint, (Ptr{Cvoid}, Cstring, Cstring), o, string(k), string(v)))
    end
    for p in something(subprotocols, String[])
        ok(ccall(wsym(:ws_options_add_subprotocol), Cint, (Ptr{Cvoid}, Cstring), o, string(p)))
    end
    for origin in something(origins, String[])
        ok(ccall(wsym(:ws_options_add_origin), Cint, (Ptr{Cvoid}, Cstring), o, string(origin)))
    end
    require_ssl_verification ||
        ok(ccall(wsym(:ws_options_set_tls_insecure_skip_verify), Cint, (Ptr{Cvoid}, Cint), o, Cint(1)))
    cafile === nothing || ok(ccall(wsym(:ws_options_set_tls_ca_file), Cint, (Ptr{Cvoid}, Cstring), o, cafile))
    capath === nothing || ok(ccall(wsym(:ws_options_set_tls_ca_dir), Cint, (Ptr{Cvoid}, Cstring), o, capath))
    certfile === nothing || ok(ccall(wsym(:ws_options_set_tls_cert_file), Cint, (Ptr{Cvoid}, Cstring), o, certfile))
    keyfile === nothing || ok(ccall(wsym(:ws_options_set_tls_key_file), Cint, (Ptr{Cvoid}, Cstring), o, keyfile))
    # Other HTTP.jl keywords (compress, maxfragmentation, suppress_close_error, ...) are
    # accepted and ignored: see docs/julia.md.
    return o
end

free_options(o) = ccall(wsym(:ws_options_free), Cvoid, (Ptr{Cvoid},), o)

# ---------------------------------------------------------------- client

"""
    WebSockets.open(f, url; headers, subprotocols, maxframesize, connect_timeout,
                    require_ssl_verification, suppress_close_error, kw...) -> f(ws)'s value
    WebSockets.open(url; kw...) -> WebSocket

Opens a client connection. With `f`, runs `f(ws)` and closes the connection
afterwards (1000; 1011 when `f` throws), returning `f`'s value.
"""
function open(f::Function, url::AbstractString; suppress_close_error::Bool=false, kw...)
    ws = open(url; kw...)
    try
        return f(ws)
    catch e
        if !(e isa WebSocketError && (suppress_close_error || isok(e)))
            isclosed(ws) || close(ws, CloseFrameBody(1011, "client error"))
            rethrow()
        end
    finally
        isclosed(ws) || close(ws)
        release!(ws)
    end
end

function open(url::AbstractString; kw...)
    o = make_options(; kw...)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    # ws_open blocks during DNS/TCP/TLS/handshake: run it on libuv's thread pool
    # so the Julia thread keeps scheduling other tasks.
    fp = wsym(:ws_open)
    rc = GC.@preserve url out begin
        @threadcall(fp, Cint, (Cstring, Ptr{Cvoid}, Ptr{Ptr{Cvoid}}), url, o, out)
    end
    free_options(o)
    if rc != WS_OK
        p = out[]
        status = 0
        detail = ""
        if p != C_NULL
            status = Int(ccall(wsym(:ws_http_status), Cint, (Ptr{Cvoid},), p))
            detail = cstr(ccall(wsym(:ws_error_detail), Cstring, (Ptr{Cvoid},), p))
            ccall(wsym(:ws_free), Cvoid, (Ptr{Cvoid},), p)
        end
        throw(WSCoreError(Int(rc), errname(rc), isempty(detail) ? strerror(rc) : detail, status))
    end
    return WebSocket(out[], true)
end

# ---------------------------------------------------------------- messages

"""
    receive(ws) -> String or Vector{UInt8}

The next message (fragments joined; pings answered inside). Throws
`WebSocketError` once the connection is closed, normal closes included.
"""
function receive(ws::WebSocket)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    while true
        p = handle(ws)
        rc = ccall(wsym(:ws_receive), Cint, (Ptr{Cvoid}, Ptr{Ptr{Cvoid}}, Cint), p, out, Cint(0))
        if rc == WS_OK
            m = out[]
            try
                n = ccall(wsym(:ws_message_size), Csize_t, (Ptr{Cvoid},), m)
                data = ccall(wsym(:ws_message_data), Ptr{UInt8}, (Ptr{Cvoid},), m)
                t = ccall(wsym(:ws_message_type), Cint, (Ptr{Cvoid},), m)
                # One copy into a Julia-owned object.
                return t == WS_TEXT ? unsafe_string(data, n) : copy(unsafe_wrap(Array, data, n))
            finally
                ccall(wsym(:ws_message_free), Cvoid, (Ptr{Cvoid},), m)
            end
        elseif rc == WS_EAGAIN
            wait_readable(ws.fd, -1)
        else
            throwerr(ws, rc)
        end
    end
end

function send_raw(ws::WebSocket, data, n::Integer, typ::Cint, fin::Union{Nothing,Bool})
    while true
        p = handle(ws)
        rc = GC.@preserve data begin
            if fin === nothing
                ccall(wsym(:ws_send), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t, Cint), p, pointer(data), n, typ)
            else
                ccall(wsym(:ws_send_fragment), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t, Cint, Cint),
                      p, pointer(data), n, typ, Cint(fin))
            end
        end
        rc == WS_OK && return nothing
        rc == WS_EAGAIN || throwerr(ws, rc)
        sleep(0.001)  # the send queue is full: let the loop drain it
    end
end

payload(x::AbstractString) = (s = String(x); (s, sizeof(s), WS_TEXT))
payload(x::AbstractVector{UInt8}) = (v = x isa Vector{UInt8} ? x : Vector{UInt8}(x); (v, length(v), WS_BINARY))

"""
    send(ws, msg)

`AbstractString` → a text message; `AbstractVector{UInt8}` → binary; any other
iterable of those → one message, one fragment per element.
"""
send(ws::WebSocket, x::Union{AbstractString,AbstractVector{UInt8}}) = (send_raw(ws, payload(x)..., nothing); nothing)

function send(ws::WebSocket, parts)
    st = iterate(parts)
    st === nothing && throw(ArgumentError("cannot send an empty iterable as a message"))
    typ = nothing
    while st !== nothing
        (x, s) = st
        nxt = iterate(parts, s)
        data, n, t = payload(x)
        typ === nothing && (typ = t)
        t == typ || throw(ArgumentError("all fragments of a message must be of one type"))
        send_raw(ws, data, n, typ, nxt === nothing)
        st = nxt
    end
    return nothing
end

ctrl_bytes(data) = data isa AbstractString ? Vector{UInt8}(codeunits(data)) : Vector{UInt8}(data)

"""    ping(ws, data=UInt8[]) — the pong is handled inside."""
function ping(ws::WebSocket, data=UInt8[])
    b = ctrl_bytes(data)
    rc = GC.@preserve b ccall(wsym(:ws_ping), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), handle(ws), pointer(b), length(b))
    rc == WS_OK || throwerr(ws, rc)
    return nothing
end

"""    pong(ws, data=UInt8[]) — an unsolicited pong."""
function pong(ws::WebSocket, data=UInt8[])
    b = ctrl_bytes(data)
    rc = GC.@preserve b ccall(wsym(:ws_pong), Cint, (Ptr{Cvoid}, Ptr{UInt8}, Csize_t), handle(ws), pointer(b), length(b))
    rc == WS_OK || throwerr(ws, rc)
    return nothing
end

"""
    close(ws, body=CloseFrameBody(1000, ""))

Starts the close handshake and waits (up to the close timeout, 5 s by default)
for the peer's close; messages that arrive meanwhile stay readable.
"""
function Base.close(ws::WebSocket, body::CloseFrameBody=CloseFrameBody(1000, ""))
    ws.ptr == C_NULL && return nothing
    isclosed(ws) && return nothing
    fp = wsym(:ws_close)
    p = handle(ws)
    reason = body.reason
    rc = GC.@preserve reason @threadcall(fp, Cint, (Ptr{Cvoid}, Cint, Cstring), p, Cint(body.code), reason)
    rc in (WS_OK, WS_ETIMEDOUT, WS_ECLOSED) || throwerr(ws, rc)
    return nothing
end

"""    isclosed(ws) — whether the connection is closed (or released)."""
isclosed(ws::WebSocket) =
    ws.ptr == C_NULL || ccall(wsym(:ws_state), Cint, (Ptr{Cvoid},), ws.ptr) == WS_STATE_CLOSED

"""    isready(ws) — whether `receive` would return at once."""
Base.isready(ws::WebSocket) = ws.ptr != C_NULL && wait_readable(ws.fd, 0)

Base.isopen(ws::WebSocket) = !isclosed(ws)

"""Iteration yields messages and ends quietly on a normal close (1000/1001/1005)."""
function Base.iterate(ws::WebSocket, state=nothing)
    try
        return (receive(ws), nothing)
    catch e
        isok(e) && return nothing
        rethrow()
    end
end
Base.IteratorSize(::Type{WebSocket}) = Base.SizeUnknown()

subprotocol(ws::WebSocket) = cstr(ccall(wsym(:ws_subprotocol), Cstring, (Ptr{Cvoid},), handle(ws)))

# ---------------------------------------------------------------- server

"""A running server: `close`, `wait`, `forceclose`, `server_addr`/`port`."""
mutable struct Server
    ptr::Ptr{Cvoid}
    fd::RawFD
    host::String
    port::Int
    task::Union{Task,Nothing}
    conns::Set{WebSocket}
end

server_addr(s::Server) = s.host
port(s::Server) = s.port

function read_request(p::Ptr{Cvoid})
    n = ccall(wsym(:ws_header_count), Cint, (Ptr{Cvoid},), p)
    headers = Pair{String,String}[
        cstr(ccall(wsym(:ws_header_name), Cstring, (Ptr{Cvoid}, Cint), p, Cint(i))) =>
        cstr(ccall(wsym(:ws_header_value), Cstring, (Ptr{Cvoid}, Cint), p, Cint(i))) for i in 0:n-1]
    Request("GET", cstr(ccall(wsym(:ws_request_target), Cstring, (Ptr{Cvoid},), p)),
            cstr(ccall(wsym(:ws_request_path), Cstring, (Ptr{Cvoid},), p)),
            cstr(ccall(wsym(:ws_request_query), Cstring, (Ptr{Cvoid},), p)), headers)
end

"""    isupgrade(req) — whether a request asks for a WebSocket upgrade."""
isupgrade(req::Request) = occursin("websocket", lowercase(header(req, "Upgrade")))

function serve_conn(f, s::Server, ws::WebSocket)
    push!(s.conns, ws)
    try
        f(ws)
        isclosed(ws) || close(ws)
    catch e
        if !(e isa WebSocketError)
            @error "WebSockets handler failed" exception = (e, catch_backtrace())
            isclosed(ws) || close(ws, CloseFrameBody(1011, "internal error"))
        end
    finally
        delete!(s.conns, ws)
        release!(ws)
    end
end

function accept_loop(f, s::Server)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    while true
        s.ptr == C_NULL && return
        rc = ccall(wsym(:ws_accept), Cint, (Ptr{Cvoid}, Ptr{Ptr{Cvoid}}, Cint), s.ptr, out, Cint(0))
        if rc == WS_OK
            ws = WebSocket(out[], false)
            ws.request = read_request(out[])
            errormonitor(@async serve_conn(f, s, ws))
        elseif rc == WS_EAGAIN
            wait_readable(s.fd, -1)
        elseif rc == WS_ECANCELED
            return
        else
            throwerr(nothing, rc)
        end
    end
end

"""
    WebSockets.listen!(f, host="127.0.0.1", port=8081; subprotocols, origins/check_origin,
                       maxframesize, sslconfig..., kw...) -> Server

Starts a server; each connection runs `f(ws)` in its own task.
"""
function listen!(f, host="127.0.0.1", port::Integer=8081; kw...)
    o = make_options(; kw...)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    rc = ccall(wsym(:ws_listen), Cint, (Cstring, Cint, Ptr{Cvoid}, Ptr{Ptr{Cvoid}}), string(host), Cint(port), o, out)
    free_options(o)
    rc == WS_OK || throwerr(nothing, rc)
    p = out[]
    fd = ccall(wsym(:ws_server_fileno), Cint, (Ptr{Cvoid},), p)
    bound = ccall(wsym(:ws_server_port), Cint, (Ptr{Cvoid},), p)
    s = Server(p, RawFD(fd), string(host), Int(bound), nothing, Set{WebSocket}())
    s.task = errormonitor(@async accept_loop(f, s))
    return s
end

"""    WebSockets.listen(f, host, port; kw...) — `listen!` and wait until closed."""
function listen(f, host="127.0.0.1", port::Integer=8081; kw...)
    s = listen!(f, host, port; kw...)
    try
        wait(s)
    finally
        close(s)
    end
end

"""Stops accepting and closes every connection with 1001."""
function Base.close(s::Server)
    s.ptr == C_NULL && return nothing
    ccall(wsym(:ws_server_close), Cint, (Ptr{Cvoid},), s.ptr)
    s.task === nothing || wait(s.task)
    p, s.ptr = s.ptr, C_NULL
    ccall(wsym(:ws_server_free), Cvoid, (Ptr{Cvoid},), p)
    return nothing
end

"""Closes the server and drops its connections without waiting for handlers."""
forceclose(s::Server) = (for ws in collect(s.conns); release!(ws); end; close(s))

Base.wait(s::Server) = s.task === nothing ? nothing : wait(s.task)
Base.isopen(s::Server) = s.ptr != C_NULL

# ---------------------------------------------------------------- WebSockets.jl habits

"""    readguarded(ws) -> (data::Vector{UInt8}, success::Bool)  (WebSockets.jl 1.x)"""
function readguarded(ws::WebSocket)
    try
        m = receive(ws)
        return (m isa String ? Vector{UInt8}(codeunits(m)) : m, true)
    catch e
        (e isa WebSocketError || e isa WSCoreError) || rethrow()
        return (UInt8[], false)
    end
end

"""    writeguarded(ws, data) -> Bool  (WebSockets.jl 1.x)"""
function writeguarded(ws::WebSocket, data)
    try
        send(ws, data)
        return true
    catch e
        (e isa WebSocketError || e isa WSCoreError) || rethrow()
        return false
    end
end

Base.read(ws::WebSocket) = (m = receive(ws); m isa String ? Vector{UInt8}(codeunits(m)) : m)
Base.write(ws::WebSocket, data) = (send(ws, data); sizeof(data))

end # module
