//! The serving session: captured requests, keep-alive, pipelining, bodies, HEAD, closing, limits
//! and errors.

use super::*;
use crate::response::CONTINUE;
use pmmux_http_core::{MAX_HEAD, MAX_HEADERS};

const BAD_REQUEST: &str = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_LARGE: &str =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const NOT_IMPLEMENTED: &str = "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[test]
fn captured_requests_get_the_response() {
    assert_eq!(serve(CURL_GET_PLAIN), (OK.to_owned(), SessionCtl::Continue));
    assert_eq!(serve(WRK_GET), (OK.to_owned(), SessionCtl::Continue));
    // wget asks for keep-alive explicitly; HTTP/1.1 keeps it without a field.
    assert_eq!(serve(WGET_GET), (OK.to_owned(), SessionCtl::Continue));
    // urllib sends `Connection: close`.
    assert_eq!(serve(URLLIB_GET), (OK_CLOSE.to_owned(), SessionCtl::Close));
}

#[test]
fn every_chunking_of_a_request_gives_one_response() {
    for request in [CURL_GET_PLAIN, WGET_GET, WRK_GET, CURL_POST, CURL_HEAD] {
        let (whole, _) = serve(request);
        for chunk in 1..request.len() {
            assert_eq!(feed(&mut session(), request, chunk).0, whole, "chunk {chunk}");
        }
    }
    // Nothing is answered before the head is complete.
    for n in 0..WRK_GET.len() {
        assert_eq!(
            serve(&WRK_GET[..n]),
            (String::new(), SessionCtl::Continue),
            "prefix {n}"
        );
    }
}

#[test]
fn keep_alive_answers_each_request_in_turn() {
    assert_eq!(serve(CURL_KEEPALIVE), (OK.repeat(2), SessionCtl::Continue));
    let mut s = session();
    for _ in 0..5 {
        assert_eq!(
            feed(&mut s, CURL_GET_PLAIN, CURL_GET_PLAIN.len()),
            (OK.to_owned(), SessionCtl::Continue)
        );
    }
    assert_eq!(s.buffered(), 0);
}

#[test]
fn pipelined_requests_are_answered_in_order_whatever_the_reads() {
    let mut pipeline = Vec::new();
    for _ in 0..100 {
        pipeline.extend_from_slice(WRK_GET);
    }
    pipeline.extend_from_slice(CURL_HEAD);
    pipeline.extend_from_slice(URLLIB_GET);
    pipeline.extend_from_slice(WRK_GET); // after `Connection: close`: never answered
    let head = OK.split_inclusive("\r\n\r\n").next().unwrap_or_default();
    let want = format!("{}{head}{OK_CLOSE}", OK.repeat(100));
    for chunk in [1, 3, 46, 100, 1460, pipeline.len()] {
        assert_eq!(
            feed(&mut session(), &pipeline, chunk),
            (want.clone(), SessionCtl::Close),
            "chunk {chunk}"
        );
    }
}

#[test]
fn request_bodies_are_skipped_by_content_length() {
    // curl's POST (body in the same segment), then a request: two answers.
    let mut input = CURL_POST.to_vec();
    input.extend_from_slice(WRK_GET);
    for chunk in [1, 5, 14, input.len()] {
        assert_eq!(feed(&mut session(), &input, chunk).0, OK.repeat(2), "chunk {chunk}");
    }
    // A body that looks like requests is not answered.
    let mut tricky = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 39\r\n\r\n".to_vec();
    tricky.extend_from_slice(b"GET /in-body HTTP/1.1\r\nHost: a\r\n\r\n12345");
    assert_eq!(serve(&tricky).0, OK);
    // The answer waits for the end of the body.
    let head = b"PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n";
    let mut s = session();
    assert_eq!(feed(&mut s, head, head.len()).0, "");
    let chunk = vec![b'x'; 10_000];
    for _ in 0..99 {
        assert_eq!(feed(&mut s, &chunk, chunk.len()).0, "");
        assert_eq!(s.buffered(), 0, "body bytes are discarded, not buffered");
    }
    let mut last = chunk.clone();
    last.extend_from_slice(WRK_GET);
    assert_eq!(feed(&mut s, &last, last.len()).0, OK.repeat(2));
}

#[test]
fn repeated_equal_content_lengths_are_accepted() {
    let req = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(serve(req), (OK.to_owned(), SessionCtl::Continue));
}

#[test]
fn head_gets_no_body() {
    let want = OK.strip_suffix(BODY).unwrap_or_default();
    assert_eq!(serve(CURL_HEAD), (want.to_owned(), SessionCtl::Continue));
    assert!(want.contains("Content-Length: 6\r\n"));
}

#[test]
fn http10_closes_unless_it_asks_for_keep_alive() {
    assert_eq!(serve(CURL_HTTP10), (OK_CLOSE.to_owned(), SessionCtl::Close));
    let keep = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    let want = OK.replace("\r\n\r\n", "\r\nConnection: keep-alive\r\n\r\n");
    let mut twice = keep.to_vec();
    twice.extend_from_slice(keep);
    assert_eq!(serve(&twice), (want.repeat(2), SessionCtl::Continue));
}

#[test]
fn connection_close_is_honoured_in_any_token_list() {
    for req in [
        &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
    ] {
        assert_eq!(
            serve(req),
            (OK_CLOSE.to_owned(), SessionCtl::Close),
            "{:?}",
            String::from_utf8_lossy(req)
        );
    }
    // Closed for good: later bytes get nothing.
    let mut s = session();
    let _ = feed(&mut s, URLLIB_GET, URLLIB_GET.len());
    assert_eq!(feed(&mut s, WRK_GET, WRK_GET.len()), (String::new(), SessionCtl::Close));
}

#[test]
fn oversized_heads_get_431_and_close() {
    let mut long_field = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    long_field.resize(MAX_HEAD + 100, b'a');
    let mut long_line = b"GET /".to_vec();
    long_line.resize(MAX_HEAD + 100, b'a');
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    for input in [&long_field, &long_line, &many] {
        for chunk in [1000, 4096, input.len()] {
            let mut s = session();
            assert_eq!(feed(&mut s, input, chunk), (TOO_LARGE.to_owned(), SessionCtl::Close));
            assert!(s.buffered() <= MAX_HEAD + chunk);
        }
    }
    // Just under the limit still works.
    let mut fits = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    fits.resize(MAX_HEAD - 4, b'a');
    fits.extend_from_slice(b"\r\n\r\n");
    assert_eq!(feed(&mut session(), &fits, 1000), (OK.to_owned(), SessionCtl::Continue));
}

#[test]
fn malformed_requests_get_400_and_close() {
    for req in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost a\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\n",
        b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        assert_eq!(
            serve(req),
            (BAD_REQUEST.to_owned(), SessionCtl::Close),
            "{:?}",
            String::from_utf8_lossy(req)
        );
    }
    // A malformed request after a good one: the good one is answered first.
    let mut input = WRK_GET.to_vec();
    input.extend_from_slice(b"NOT HTTP\r\n\r\n");
    assert_eq!(serve(&input), (format!("{OK}{BAD_REQUEST}"), SessionCtl::Close));
}

#[test]
fn chunked_bodies_get_501_and_close() {
    assert_eq!(serve(CURL_CHUNKED), (NOT_IMPLEMENTED.to_owned(), SessionCtl::Close));
    let gzip = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    assert_eq!(serve(gzip), (NOT_IMPLEMENTED.to_owned(), SessionCtl::Close));
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    let head = b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    let mut s = session();
    let continue_ = String::from_utf8_lossy(CONTINUE).into_owned();
    assert_eq!(feed(&mut s, head, head.len()), (continue_, SessionCtl::Continue));
    assert_eq!(feed(&mut s, b"hello", 5), (OK.to_owned(), SessionCtl::Continue));
    // Without a body there is nothing to continue.
    let empty = b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n";
    assert_eq!(serve(empty).0, OK);
}

#[test]
fn empty_lines_between_requests_are_ignored() {
    let mut input = b"\r\n\n".to_vec();
    input.extend_from_slice(WRK_GET);
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(WRK_GET);
    for chunk in [1, 2, input.len()] {
        assert_eq!(feed(&mut session(), &input, chunk).0, OK.repeat(2), "chunk {chunk}");
    }
}

#[test]
fn eof_closes_without_answering_a_partial_request() {
    let mut s = session();
    let mut out = Vec::new();
    assert_eq!(s.on_data(&WRK_GET[..10], &mut out), SessionCtl::Continue);
    assert_eq!(s.on_eof(&mut out), SessionCtl::Close);
    assert!(out.is_empty());
    assert_eq!(s.on_data(WRK_GET, &mut out), SessionCtl::Close);
    assert!(out.is_empty());
}
