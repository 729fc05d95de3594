# Finding and calling libwscore.
#
# `ccall((:sym, lib), ...)` needs `lib` to be a compile-time constant, but the
# library path is only known at run time (WSCORE_LIBRARY, the build tree,
# Libdl's path). So `load!()` (run by `__init__`) dlopens the library once and
# resolves every function of `SYMBOLS` into `FPTRS`; each ccall then calls
# through `wsym(:name)`, a read-only Dict lookup (no lock: the Dict is never
# written after `__init__`). A symbol missing from an old library fails at
# load time, naming it, instead of at its first call.
#
# `@threadcall` compiles its own @cfunction wrapper that runs on libuv's thread
# pool, and resolves its function expression with `cglobal`; the two blocking
# calls go through the const Refs `FP_WS_OPEN`/`FP_WS_CLOSE`: a global pointer,
# read on the calling thread, is valid however @threadcall places the
# expression (never a closure over a local, which @cfunction would refuse, and
# no Dict lookup on a libuv thread).
#
# tests/julia/check_ccalls.py checks every ccall of the package against
# include/wscore.h and the library's exported symbols.
module LibWSCore

using Libdl

# Every C function the binding calls (the checker verifies that this list
# covers every ccall).
const SYMBOLS = (
    :ws_version, :ws_version_number, :ws_strerror, :ws_err_name,
    :ws_options_new, :ws_options_free, :ws_options_set_connect_timeout,
    :ws_options_set_handshake_timeout, :ws_options_set_close_timeout,
    :ws_options_set_idle_timeout, :ws_options_set_keepalive,
    :ws_options_set_max_message_size, :ws_options_set_send_timeout,
    :ws_options_set_send_queue_limit, :ws_options_set_receive_queue_limit, :ws_options_add_header,
    :ws_options_add_subprotocol, :ws_options_add_origin, :ws_options_set_require_origin,
    :ws_options_set_manual_upgrade, :ws_options_set_tls_ca_file, :ws_options_set_tls_ca_dir,
    :ws_options_set_tls_cert_file, :ws_options_set_tls_key_file, :ws_options_set_tls_cert_pem,
    :ws_options_set_tls_key_pem, :ws_options_set_tls_verify_client, :ws_options_set_tls_insecure_skip_verify,
    :ws_open, :ws_listen, :ws_server_port, :ws_server_fileno, :ws_accept, :ws_server_close,
    :ws_server_free, :ws_upgrade_accept, :ws_upgrade_reject,
    :ws_receive, :ws_message_data, :ws_message_size, :ws_message_type, :ws_message_free,
    :ws_send, :ws_send_fragment, :ws_ping, :ws_pong, :ws_close, :ws_close_code,
    :ws_close_reason, :ws_state, :ws_fileno, :ws_buffered_amount, :ws_error_detail, :ws_free,
    :ws_subprotocol, :ws_http_status, :ws_request_target, :ws_request_path, :ws_request_query,
    :ws_header_count, :ws_header_name, :ws_header_value, :ws_peer_address, :ws_release_handshake,
)

const FPTRS = Dict{Symbol,Ptr{Cvoid}}()
const FP_WS_OPEN = Ref{Ptr{Cvoid}}(C_NULL)
const FP_WS_CLOSE = Ref{Ptr{Cvoid}}(C_NULL)
const PATH = Ref{String}("")

# The library this binding speaks to: the C ABI is stable within a major version.
const ABI_MAJOR = 0

function candidates()
    env = get(ENV, "WSCORE_LIBRARY", "")
    isempty(env) || return [env]   # an explicit choice is never second-guessed
    out = String[]
    dir = @__DIR__
    for _ in 1:6
        # `build` first; sanitizer builds cannot be loaded into an
        # uninstrumented julia process, so they are never candidates.
        builds = [b for b in readdir_or_empty(dir)
                  if startswith(b, "build") && !occursin(r"asan|tsan|msan|ubsan", b)]
        sort!(builds; by = b -> (b != "build", b))
        for b in builds
            api = joinpath(dir, b, "src", "api")
            for f in ("libwscore.so.$(ABI_MAJOR)", "libwscore.so")
                isfile(joinpath(api, f)) && push!(out, joinpath(api, f))
            end
        end
        dir = dirname(dir)
    end
    push!(out, "libwscore.so.$(ABI_MAJOR)")
    return out
end

readdir_or_empty(dir) = try
    readdir(dir)
catch
    String[]
end

function load!()
    isempty(FPTRS) || return nothing
    tried = String[]
    handle = C_NULL
    for p in candidates()
        handle = Libdl.dlopen_e(p)
        if handle != C_NULL
            PATH[] = p
            break
        end
        push!(tried, p)
    end
    handle == C_NULL && error("WSCore: cannot load libwscore. Set ENV[\"WSCORE_LIBRARY\"] to the path " *
                              "of libwscore.so, or build it (meson setup build && ninja -C build). " *
                              "Tried: " * join(tried, ", "))
    found = Dict{Symbol,Ptr{Cvoid}}()
    missing_syms = Symbol[]
    for s in SYMBOLS
        p = Libdl.dlsym_e(handle, s)
        p == C_NULL ? push!(missing_syms, s) : (found[s] = p)
    end
    isempty(missing_syms) ||
        error("WSCore: $(PATH[]) lacks $(join(missing_syms, ", ")) (a library older than this binding?)")
    v = ccall(found[:ws_version_number], Cuint, ())
    (v >> 16) == ABI_MAJOR ||
        error("WSCore: $(PATH[]) is version $(v >> 16).$((v >> 8) & 0xff); this binding needs $(ABI_MAJOR).x")
    FP_WS_OPEN[] = found[:ws_open]
    FP_WS_CLOSE[] = found[:ws_close]
    merge!(FPTRS, found)   # last: a non-empty FPTRS means "loaded"
    return nothing
end

@inline wsym(name::Symbol) = FPTRS[name]

# Error codes and constants of include/wscore.h (the checker compares them
# with the header).
const WS_OK = Cint(0)
const WS_EINVAL = Cint(-1)
const WS_ETIMEDOUT = Cint(-3)
const WS_EAGAIN = Cint(-4)
const WS_ECLOSED = Cint(-5)
const WS_EHANDSHAKE = Cint(-6)
const WS_ETLS = Cint(-7)
const WS_ESTATE = Cint(-15)
const WS_ECANCELED = Cint(-20)
const WS_TEXT = Cint(1)
const WS_BINARY = Cint(2)
const WS_STATE_CONNECTING = Cint(0)
const WS_STATE_OPEN = Cint(1)
const WS_STATE_CLOSING = Cint(2)
const WS_STATE_CLOSED = Cint(3)

cstr(p::Ptr{UInt8}) = p == C_NULL ? "" : unsafe_string(p)

errname(rc::Integer) = cstr(ccall(wsym(:ws_err_name), Ptr{UInt8}, (Cint,), rc))
strerror(rc::Integer) = cstr(ccall(wsym(:ws_strerror), Ptr{UInt8}, (Cint,), rc))
version() = cstr(ccall(wsym(:ws_version), Ptr{UInt8}, ()))

end # module
