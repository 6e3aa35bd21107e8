//! One event per hit: read the arguments user space described, apply the
//! filter, send the event. Every user-memory read is bounded and may fail
//! (then the argument is marked unreadable); nothing is trusted.

use crate::arch::{self, Registers};
use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    cty::c_void,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_get_stack,
        bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_str_bytes,
        generated::{bpf_get_attach_cookie, bpf_loop, bpf_probe_read_user as probe_read_user_raw},
    },
    macros::{map, uprobe},
    maps::{Array, PerCpuArray, RingBuf},
    programs::ProbeContext,
    EbpfContext as _,
};
use gotrace_common::{
    probe::Cookie,
    trace::{
        is_two_words, unreadable_bit, ArgSpec, Event, ProbeSpec, ARG_C_STRING, ARG_GO_STRING,
        ARG_INTERFACE, ARG_SLICE, ARG_STRING_SLICE, ARG_WORD, G_IN_REGISTER, G_IN_TLS,
        IFACE_DATA_AT, IFACE_TEXT_AT, IFACE_TEXT_MAX, IFACE_TYPE_AT, JOIN_OR, LOCATION_KIND,
        LOCATION_REGISTER, LOCATION_STACK, MAX_ARGS, MAX_CONDITIONS, MAX_FRAMES, OP_EQ, OP_GE,
        OP_GT, OP_LE, OP_LT, OP_NE, OP_STR_EQ, OP_STR_NE, STRING_SIZE, STRING_SLICE_ELEMENTS,
        STRING_SLICE_ENTRY, STRING_SLICE_TEXT,
    },
};

// Static names are the map names of `gotrace_common::trace`.
// One page until trace sizes it (see `gotrace_common::trace::RING_BYTES`).
#[map]
static TRACE_EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
// One entry until trace sizes it (see `gotrace_common::trace::MAX_PROBES`).
static TRACE_PROBES: Array<ProbeSpec> = Array::with_max_entries(1, 0);
#[map]
static TRACE_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

// Set by gotrace-cli before load: `gotrace_common::trace::TID_FILTER`.
#[unsafe(no_mangle)]
static TRACE_TID: u64 = 0;

#[uprobe]
pub fn trace(ctx: ProbeContext) -> u32 {
    // SAFETY: the helper only reads the attach cookie of the running program.
    let cookie = Cookie(unsafe { bpf_get_attach_cookie(ctx.as_ptr()) });
    let Some(spec) = TRACE_PROBES.get(cookie.function()) else {
        return 0;
    };
    if !crate::budget::admit(cookie)
        || !crate::entry::is_call(&ctx, cookie)
        || !crate::scope::keeps()
    {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    // SAFETY: plain constants the loader filled in.
    let wanted_tid = unsafe { core::ptr::read_volatile(&TRACE_TID) };
    if (spec.pid != 0 && spec.pid != pid) || (wanted_tid != 0 && wanted_tid != u64::from(tid)) {
        return 0;
    }
    let Some(mut entry) = TRACE_EVENTS.reserve::<Event>(0) else {
        count_lost();
        return 0;
    };
    // The registers (arm64's are 272 bytes) do not fit on the stack next
    // to this program's locals, and a per-CPU slot would be shared with
    // any program that preempts this one on its CPU (uprobe programs run
    // preemptible): they go in a record of their own, never submitted.
    let Some(mut scratch) = TRACE_EVENTS.reserve::<Registers>(0) else {
        count_lost();
        entry.discard(0);
        return 0;
    };
    let copy = scratch.as_mut_ptr();
    if !arch::copy_registers(&ctx, copy) {
        scratch.discard(0);
        entry.discard(0);
        return 0;
    }
    // SAFETY: the reserved record is this program's alone until discarded
    // below, and the copy filled it.
    let regs = unsafe { &mut *copy };
    if cookie.flags() & Cookie::FLAG_AFTER_XCHG_RAX_R8 != 0 {
        arch::undo_xchg_rax_r8(regs);
    }
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved, exclusively owned ring buffer
    // record of `size_of::<Event>()` bytes; it is fully written before use.
    unsafe {
        core::ptr::write_bytes(event, 0, 1);
        (*event).timestamp = bpf_ktime_get_ns();
        (*event).pid = pid;
        (*event).tid = tid;
        (*event).probe = cookie.function();
        (*event).site = cookie.site();
        (*event).cpu = bpf_get_smp_processor_id() as u16;
        (*event).ip = arch::instruction_pointer(regs);
        (*event).comm = bpf_get_current_comm().unwrap_or_default();
        let g = match spec.g_from {
            G_IN_REGISTER => Some(arch::g(regs)),
            G_IN_TLS => crate::goroutine::g_from_tls(),
            _ => None,
        };
        (*event).goid = g.and_then(crate::goroutine::goid_of).unwrap_or(0);
        for i in 0..MAX_ARGS {
            read_arg(regs, &spec.args[i], i, &mut *event);
        }
        if !passes(spec, &*event) {
            scratch.discard(0);
            entry.discard(0);
            return 0;
        }
        if spec.stack != 0 {
            let stack = (*event).stack.as_mut_ptr().cast();
            let got = bpf_get_stack(
                ctx.as_ptr(),
                stack,
                (MAX_FRAMES * 8) as u32,
                BPF_F_USER_STACK as u64,
            );
            (*event).stack_bytes = got.max(0) as u32;
            (*event).return_address = arch::return_address(regs);
        }
    }
    scratch.discard(0);
    entry.submit(0);
    0
}

/// Counts an event the full ring buffer had no room for.
#[inline(always)]
fn count_lost() {
    if let Some(lost) = TRACE_LOST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot; a program preempting this one between the
        // load and the store can lose one count, which only undercounts
        // what is already reported as lost.
        unsafe { *lost += 1 };
    }
}

/// Reads argument `i` into the event's value and string slots.
#[inline(always)]
fn read_arg(ctx: &Registers, arg: &ArgSpec, i: usize, event: &mut Event) {
    if arg.kind == 0 {
        return;
    }
    let Some(first) = location(ctx, arg.first) else {
        event.cut |= unreadable_bit(i);
        return;
    };
    // Indirect: `first` is a pointer; the value or string header sits at
    // pointer + offset.
    let (value, length) = if arg.indirect != 0 {
        let at = first.wrapping_add(arg.offset);
        // SAFETY: bounded user reads that fail cleanly.
        let value = unsafe { bpf_probe_read_user(at as *const u64) };
        // SAFETY: as above.
        let length = unsafe { bpf_probe_read_user((at + 8) as *const u64) };
        match (value, arg.kind) {
            // Two-word headers: string (pointer, length), slice (pointer,
            // length, capacity), interface (type, data).
            (Ok(v), kind) if is_two_words(kind) => (v, length.unwrap_or(0)),
            (Ok(v), _) => (v, 0),
            (Err(_), _) => {
                event.cut |= unreadable_bit(i);
                return;
            }
        }
    } else {
        let length = if is_two_words(arg.kind) {
            location(ctx, arg.second).unwrap_or(0)
        } else {
            0
        };
        (first, length)
    };
    match arg.kind {
        ARG_WORD => event.values[i] = value,
        ARG_GO_STRING => {
            event.values[i] = length;
            if length >= STRING_SIZE as u64 {
                event.cut |= 1 << i;
            }
            let n = (length.min(STRING_SIZE as u64 - 1) as u32) & (STRING_SIZE as u32 - 1);
            // SAFETY: reads at most n < STRING_SIZE bytes into a buffer of
            // STRING_SIZE; a bad pointer makes the helper fail.
            let failed = unsafe {
                probe_read_user_raw(event.strings[i].as_mut_ptr().cast(), n, value as *const _)
            } < 0;
            if failed {
                event.cut |= unreadable_bit(i);
            }
        }
        ARG_SLICE => read_slice(value, length, arg.element, i, event),
        ARG_STRING_SLICE => read_string_slice(value, length, i, event),
        ARG_INTERFACE => read_interface(value, length, arg.element, i, event),
        ARG_C_STRING => {
            // SAFETY: the helper stops at the buffer's end.
            match unsafe {
                bpf_probe_read_user_str_bytes(value as *const u8, &mut event.strings[i])
            } {
                Ok(bytes) => {
                    event.values[i] = bytes.len() as u64;
                    if bytes.len() >= STRING_SIZE - 1 {
                        event.cut |= 1 << i;
                    }
                }
                Err(_) => event.cut |= unreadable_bit(i),
            }
        }
        _ => {}
    }
}

/// The first whole elements of a slice of `length` elements of `element`
/// bytes at `array`.
#[inline(always)]
fn read_slice(array: u64, length: u64, element: u32, i: usize, event: &mut Event) {
    event.values[i] = length;
    let element = u64::from(element.max(1));
    let fit = (STRING_SIZE as u64 - 1) / element;
    let count = if length < fit { length } else { fit };
    if count < length {
        event.cut |= 1 << i;
    }
    let n = ((count * element) as u32) & (STRING_SIZE as u32 - 1);
    // SAFETY: at most STRING_SIZE - 1 bytes into a buffer of STRING_SIZE;
    // a bad pointer makes the helper fail.
    let failed =
        unsafe { probe_read_user_raw(event.strings[i].as_mut_ptr().cast(), n, array as *const _) }
            < 0;
    if failed {
        event.cut |= unreadable_bit(i);
    }
}

/// The first elements of a `[]string` of `length` elements at `array`, in
/// the layout of `ARG_STRING_SLICE`. Headers are read one by one: the
/// array may end at a page end right after the last element.
#[inline(always)]
fn read_string_slice(array: u64, length: u64, i: usize, event: &mut Event) {
    event.values[i] = length;
    if length > STRING_SLICE_ELEMENTS as u64 {
        event.cut |= 1 << i;
    }
    for e in 0..STRING_SLICE_ELEMENTS {
        if e as u64 >= length {
            break;
        }
        // SAFETY: bounded user read that fails cleanly.
        let header = unsafe { bpf_probe_read_user((array + 16 * e as u64) as *const [u64; 2]) };
        let Ok([text, text_length]) = header else {
            event.cut |= unreadable_bit(i);
            return;
        };
        let entry = &mut event.strings[i][e * STRING_SLICE_ENTRY..(e + 1) * STRING_SLICE_ENTRY];
        entry[0] = text_length.min(255) as u8;
        let n = text_length.min(STRING_SLICE_TEXT as u64) as u32;
        // SAFETY: at most STRING_SLICE_TEXT bytes into the entry's text;
        // a bad pointer makes the helper fail.
        let failed =
            unsafe { probe_read_user_raw(entry[1..].as_mut_ptr().cast(), n, text as *const _) } < 0;
        if failed {
            event.cut |= unreadable_bit(i);
            return;
        }
    }
}

/// The dynamic type of an interface (`type_word`, through the itab when
/// `itab_type_at` is nonzero) and what its data word points to.
#[inline(always)]
fn read_interface(type_word: u64, data: u64, itab_type_at: u32, i: usize, event: &mut Event) {
    event.values[i] = data;
    if type_word == 0 {
        return; // nil: all zeros
    }
    let rtype = if itab_type_at != 0 {
        // SAFETY: bounded user read that fails cleanly.
        match unsafe { bpf_probe_read_user((type_word + u64::from(itab_type_at)) as *const u64) } {
            Ok(t) => t,
            Err(_) => {
                event.cut |= unreadable_bit(i);
                return;
            }
        }
    } else {
        type_word
    };
    let slot = &mut event.strings[i];
    slot[IFACE_TYPE_AT..IFACE_TYPE_AT + 8].copy_from_slice(&rtype.to_le_bytes());
    // Speculative reads: which of them mean something depends on the type,
    // which only user space can name. A failure leaves zeros.
    // SAFETY: bounded user reads into the slot's own bytes.
    unsafe {
        let Ok(value) = bpf_probe_read_user(data as *const [u64; 2]) else {
            return;
        };
        slot[IFACE_DATA_AT..IFACE_DATA_AT + 8].copy_from_slice(&value[0].to_le_bytes());
        slot[IFACE_DATA_AT + 8..IFACE_DATA_AT + 16].copy_from_slice(&value[1].to_le_bytes());
        let n = if value[1] < IFACE_TEXT_MAX as u64 {
            value[1] as u32
        } else {
            IFACE_TEXT_MAX as u32
        };
        probe_read_user_raw(
            slot[IFACE_TEXT_AT..].as_mut_ptr().cast(),
            n & (STRING_SIZE as u32 - 1),
            value[0] as *const _,
        );
    }
}

/// The value at a location: a saved register, or a word on the stack.
#[inline(always)]
fn location(ctx: &Registers, location: u32) -> Option<u64> {
    let index = location & !LOCATION_KIND;
    match location & LOCATION_KIND {
        LOCATION_REGISTER => arch::register(ctx, index),
        LOCATION_STACK => {
            let sp = arch::stack_pointer(ctx);
            // SAFETY: bounded user read that fails cleanly.
            unsafe { bpf_probe_read_user((sp + u64::from(index)) as *const u64) }.ok()
        }
        _ => None,
    }
}

/// What `condition_at` works on and what it has found so far.
#[repr(C)]
struct Conditions {
    spec: *const ProbeSpec,
    event: *const Event,
    any: bool,
    all: bool,
    used: bool,
}

/// Whether the event passes the probe's filter (no conditions: it does).
/// The conditions are evaluated in a `bpf_loop` callback, which the
/// verifier checks once, not for every combination of earlier outcomes:
/// unrolled, they made this program slow to load.
#[inline(always)]
fn passes(spec: &ProbeSpec, event: &Event) -> bool {
    let mut state = Conditions {
        spec,
        event,
        any: false,
        all: true,
        used: false,
    };
    // SAFETY: the callback only reads through the pointers in `state`,
    // which outlive the loop.
    unsafe {
        bpf_loop(
            MAX_CONDITIONS as u32,
            condition_at as *mut c_void,
            (&mut state as *mut Conditions).cast(),
            0,
        );
    }
    !state.used
        || if spec.join == JOIN_OR {
            state.any
        } else {
            state.all
        }
}

/// `bpf_loop` callback: evaluates condition `index` into the `Conditions`
/// at `state`.
extern "C" fn condition_at(index: u64, state: *mut c_void) -> i64 {
    // SAFETY: `passes` hands its own `Conditions`, alive for the loop.
    let state = unsafe { &mut *state.cast::<Conditions>() };
    // SAFETY: both point at memory `trace` owns for this hit.
    let (spec, event) = unsafe { (&*state.spec, &*state.event) };
    let i = index as usize;
    if i >= MAX_CONDITIONS {
        return 1;
    }
    let c = &spec.conditions[i];
    if c.op == 0 {
        return 0;
    }
    state.used = true;
    let arg = (c.arg as usize) & (MAX_ARGS.next_power_of_two() - 1);
    if arg >= MAX_ARGS {
        state.all = false;
        return 1;
    }
    let value = event.values[arg] as i64;
    let holds = match c.op {
        OP_EQ => value == c.value,
        OP_NE => value != c.value,
        OP_LT => value < c.value,
        OP_LE => value <= c.value,
        OP_GT => value > c.value,
        OP_GE => value >= c.value,
        OP_STR_EQ | OP_STR_NE => {
            let equal = strings_equal(&event.strings[arg], event.values[arg], c);
            equal == (c.op == OP_STR_EQ)
        }
        _ => false,
    };
    state.any |= holds;
    state.all &= holds;
    0
}

/// The string argument equals the condition's constant (both its length
/// and its bytes; a cut string never equals). Both buffers are zero past
/// their length (the event is zeroed, the constant padded), so whole words
/// compare without a branch per byte, which keeps verification short.
#[inline(always)]
fn strings_equal(
    string: &[u8; STRING_SIZE],
    length: u64,
    c: &gotrace_common::trace::Condition,
) -> bool {
    if length != u64::from(c.string_len) || length >= STRING_SIZE as u64 {
        return false;
    }
    // Word loads: built from bytes, the comparison needs more registers
    // than BPF has, and its spills overflow the stack it shares with trace.
    let (a, b) = (
        string.as_ptr().cast::<u64>(),
        c.string.as_ptr().cast::<u64>(),
    );
    let mut differ = 0u64;
    for w in 0..STRING_SIZE / 8 {
        // SAFETY: both arrays are STRING_SIZE bytes at 8-aligned offsets of
        // 8-aligned structs (asserted in gotrace_common::trace).
        differ |= unsafe { a.add(w).read() ^ b.add(w).read() };
    }
    differ == 0
}
