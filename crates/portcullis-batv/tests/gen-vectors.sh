#!/usr/bin/env bash
# Regenerate the interop vectors in tests/vectors/ from real implementations.
#
# Needs (Debian 12): exim4-daemon-light (Exim 4.96), postsrsd (1.10, libsrs2
# code), srs (Perl Mail::SRS 0.31) and faketime (libfaketime), e.g.
#   DEBIAN_FRONTEND=noninteractive apt-get install -y exim4-daemon-light postsrsd srs faketime
# Every tool runs under faketime at a fixed instant (always 12:00 UTC, so no
# day boundary is near), and that instant is recorded with each vector; the
# Rust tests verify at the same instant with ManualClock / a `now` argument.
#
# postsrsd depends on postfix, which conflicts with the exim4 packages, so on
# one machine install postsrsd/srs and unpack Exim without installing it:
#   apt-get download exim4-daemon-light exim4-base
#   for f in exim4-*.deb; do dpkg -x "$f" /tmp/eximx; done
#   printf 'exim_user = root\nexim_group = root\nnever_users =\n' > /tmp/eximx.conf
#   EXIM=/tmp/eximx/usr/sbin/exim4 EXIM_CONF=/tmp/eximx.conf crates/portcullis-batv/tests/gen-vectors.sh
# (`exim -be` only expands strings; no mail is sent and no daemon runs.)
#
# The last file, ours-checked.tsv, has the tools judge this crate's own
# output: the script builds examples/make-vectors.rs with cargo, or uses the
# binary named by MAKER=/path/to/make-vectors.
#
# Usage: crates/portcullis-batv/tests/gen-vectors.sh   (from anywhere)
# CI does not run this script; the tests read the committed files.
set -euo pipefail
EXIM="${EXIM:-exim}"
exim_cmd=("$EXIM")
[ -n "${EXIM_CONF:-}" ] && exim_cmd+=(-C "$EXIM_CONF")
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/vectors"
mkdir -p "$out"
for tool in "$EXIM" faketime postsrsd srs; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

# Unix time of 12:00 UTC on a day number.
noon() { echo $(( $1 * 86400 + 43200 )); }
ft() { local t="$1"; shift; faketime -f "@$(date -u -d "@$t" '+%Y-%m-%d %H:%M:%S')" "$@"; }
exim_be() { ft "$1" "${exim_cmd[@]}" -be "$2"; }

########## prvs signing: exim ${prvs{address}{secret}{keynum}} ##########
# columns: unix_time  day  keynum  secret  address  exim_output
sign="$out/exim-prvs-sign.tsv"
{
  echo "# $("${exim_cmd[@]}" -bV | head -1)"
  echo "# exim -be '\${prvs{ADDRESS}{SECRET}{KEYNUM}}' under faketime at UNIX_TIME"
  printf '# unix_time\tday\tkeynum\tsecret\taddress\texim_output\n'
} > "$sign"
# day 20454 = 2026-01-01; 20992..20999 sign expiry days that wrap past 999.
for day in 20454 20992 20993 20995 20999 21000 19999; do
  t=$(noon "$day")
  while IFS=$'\t' read -r k secret addr; do
    tag=$(exim_be "$t" "\${prvs{$addr}{$secret}{$k}}")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$day" "$k" "$secret" "$addr" "$tag" >> "$sign"
  done <<'ROWS'
3	secret	user@example.com
0	secret	user@example.com
9	another secret with spaces	User.Name+tag@Example.COM
1	k	a@b.example
5	0123456789012345678901234567890123456789012345678901234567890123	bounce-me@mail.example.org
7	s3cr3t!#%&*	x_y-z=w@sub.domain.example
ROWS
done

########## prvs checking: exim ${prvscheck{tagged}{secret}{...}} ##########
# columns: unix_time  day  secret  tagged  exim_verdict(valid|invalid|not-prvs)  case
check="$out/exim-prvs-check.tsv"
{
  echo "# $("${exim_cmd[@]}" -bV | head -1)"
  echo "# exim -be '\${prvscheck{TAGGED}{SECRET}{[\$prvscheck_result]}}' under faketime at UNIX_TIME"
  echo "# output '[1]' = valid, '[]' = invalid (bad hash or expired), '' = not a prvs address"
  printf '# unix_time\tday\tsecret\ttagged\texim_verdict\tcase\n'
} > "$check"
exim_check() { # time secret tagged case
  local r
  r=$(exim_be "$1" "\${prvscheck{$3}{$2}{[\$prvscheck_result]}}")
  case "$r" in
    "[1]") v=valid ;; "[]") v=invalid ;; "") v=not-prvs ;; *) v="unexpected:$r" ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(( $1 / 86400 ))" "$2" "$3" "$v" "$4" >> "$check"
}
grep -v '^#' "$sign" | while IFS=$'\t' read -r t day k secret addr tag; do
  for d in 0 1 6 7; do exim_check $(( t + d * 86400 )) "$secret" "$tag" "age $d days"; done
  for d in 8 30; do exim_check $(( t + d * 86400 )) "$secret" "$tag" "expired: age $d days"; done
  # Same length (Exim refuses secrets over 64 bytes), different first byte.
  [ "${secret:0:1}" = x ] && w="y${secret:1}" || w="x${secret:1}"
  exim_check "$t" "$w" "$tag" "wrong secret"
  # Flip one hex digit of the signature (position 10 of the tag).
  c=${tag:10:1}; [ "$c" = "0" ] && n=1 || n=0
  exim_check "$t" "$secret" "${tag:0:10}$n${tag:11}" "tampered signature"
  # Change the expiry day by one.
  dd=${tag:6:3}; nd=$(printf '%03d' $(( (10#$dd + 1) % 1000 )))
  exim_check "$t" "$secret" "${tag:0:6}$nd${tag:9}" "tampered day"
  # Case: an MTA upper-cased the tag syntax (Exim matches "prvs=" caselessly
  # but compares the hex case-sensitively).
  exim_check "$t" "$secret" "PRVS=${tag:5}" "upper-case prefix"
  exim_check "$t" "$secret" "${tag:0:9}$(printf '%s' "${tag:9:6}" | tr a-f A-F)${tag:15}" "upper-case hex"
  # Change the original local part.
  exim_check "$t" "$secret" "${tag%%@*}x@${tag#*@}" "tampered local part"
done
exim_check "$(noon 20454)" secret "user@example.com" "untagged"

########## SRS: postsrsd (libsrs2) and Mail::SRS ##########
# columns: tool  direction  unix_time  day  secret  forwarder  input  output
srsf="$out/srs.tsv"
{
  echo "# postsrsd $(postsrsd -v 2>&1 | head -1 | tr -d '\n'); srs = Perl Mail::SRS $(perl -MMail::SRS -e 'print $Mail::SRS::VERSION')"
  echo "# postsrsd: TCP table queries 'get ADDRESS' on the forward/reverse ports (postsrsd -s SECRETFILE -d FORWARDER)"
  echo "# srs: srs --secret=SECRET --alias=FORWARDER ADDRESS / srs --secret=SECRET --reverse ADDRESS"
  echo "# output 'ERROR ...' = the tool refused the address"
  printf '# tool\tdirection\tunix_time\tday\tsecret\tforwarder\tinput\toutput\n'
} > "$srsf"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
port_file="$tmp/port"; echo 27001 > "$port_file"
postsrsd_query() { # time secret forwarder direction(forward|reverse) address
  # A loaded machine sometimes closes the first connection before postsrsd
  # answers: retry with a fresh daemon until there is an answer.
  local answer
  for _ in 1 2 3 4 5; do
    answer=$(postsrsd_query_once "$@")
    [ "$answer" != "ERROR " ] && break
    sleep 0.5
  done
  echo "$answer"
}
postsrsd_query_once() {
  # Runs in a command substitution (a subshell), so the next free port
  # pair is kept in a file, not a variable.
  local fport rport pid line p
  fport=$(cat "$port_file"); rport=$(( fport + 1 )); echo $(( fport + 2 )) > "$port_file"
  printf '%s\n' "$2" > "$tmp/secret"
  rm -f "$tmp/pid"
  ft "$1" postsrsd -s "$tmp/secret" -d "$3" -f "$fport" -r "$rport" -l 127.0.0.1 -p "$tmp/pid" >/dev/null 2>&1 &
  for _ in $(seq 50); do
    [ -s "$tmp/pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break
    sleep 0.1
  done
  pid=$(cat "$tmp/pid")
  p=$fport; [ "$4" = reverse ] && p=$rport
  exec 3<>"/dev/tcp/127.0.0.1/$p"
  printf 'get %s\n' "$5" >&3
  IFS= read -r line <&3 || true
  exec 3<&-
  kill "$pid"; wait 2>/dev/null || true
  line=${line%$'\r'}
  case "$line" in
    "200 "*) echo "${line#200 }" ;;
    *) echo "ERROR $line" ;;
  esac
}
perl_srs() { # time secret forwarder direction address
  local r
  if [ "$4" = forward ]; then
    r=$(ft "$1" srs --secret="$2" --alias="$3" "$5" 2>"$tmp/err") || r="ERROR $(head -1 "$tmp/err")"
  else
    r=$(ft "$1" srs --secret="$2" --reverse "$5" 2>"$tmp/err") || r="ERROR $(head -1 "$tmp/err")"
  fi
  echo "${r%%$'\n'*}"
}
row() { # tool direction time secret forwarder input output
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(( $3 / 86400 ))" "$4" "$5" "$6" "$7" >> "$srsf"
}
# day 20454 = 2026-01-01 (stamp slot 998); 20479 = slot 1023 (wraps to 0 next day).
for day in 20454 20479 20480 19000; do
  t=$(noon "$day")
  while IFS=$'\t' read -r secret fwd addr; do
    for tool in postsrsd srs; do
      if [ "$tool" = postsrsd ]; then q=postsrsd_query; else q=perl_srs; fi
      f=$($q "$t" "$secret" "$fwd" forward "$addr")
      row "$tool" forward "$t" "$secret" "$fwd" "$addr" "$f"
      case "$f" in ERROR*) continue ;; esac
      for d in 0 21; do
        row "$tool" reverse $(( t + d * 86400 )) "$secret" "$fwd" "$f" \
          "$($q $(( t + d * 86400 )) "$secret" "$fwd" reverse "$f")"
      done
      for d in 22 40; do
        row "$tool" reverse $(( t + d * 86400 )) "$secret" "$fwd" "$f" \
          "$($q $(( t + d * 86400 )) "$secret" "$fwd" reverse "$f")"
      done
      # Case-smashed (an MTA lower-cased the whole local part): hash check is case-insensitive.
      lower=$(printf '%s' "${f%@*}" | tr 'A-Z' 'a-z')@${f#*@}
      row "$tool" reverse "$t" "$secret" "$fwd" "$lower" "$($q "$t" "$secret" "$fwd" reverse "$lower")"
      # Wrong secret.
      row "$tool" reverse "$t" "x$secret" "$fwd" "$f" "$($q "$t" "x$secret" "$fwd" reverse "$f")"
      # A forged hash (first character changed).
      h=${f:5:1}; [ "$h" = A ] && nh=B || nh=A
      forged="${f:0:5}$nh${f:6}"
      row "$tool" reverse "$t" "$secret" "$fwd" "$forged" "$($q "$t" "$secret" "$fwd" reverse "$forged")"
      # Second hop: a relay forwarding the SRS0 address makes SRS1; reversing gives the SRS0 back.
      case "$f" in
        SRS0*)
          s1=$($q "$t" "$secret" "hop2.example" forward "$f")
          row "$tool" forward "$t" "$secret" "hop2.example" "$f" "$s1"
          case "$s1" in
            ERROR*) ;;
            *) row "$tool" reverse "$t" "$secret" "hop2.example" "$s1" \
                 "$($q "$t" "$secret" "hop2.example" reverse "$s1")"
               # postsrsd will not make SRS1 ("Already rewritten") but reverses it.
               row postsrsd reverse "$t" "$secret" "hop2.example" "$s1" \
                 "$(postsrsd_query "$t" "$secret" "hop2.example" reverse "$s1")"
               # Third hop: re-forwarding an SRS1 keeps its host and user.
               s1b=$($q "$t" "$secret" "hop3.example" forward "$s1")
               row "$tool" forward "$t" "$secret" "hop3.example" "$s1" "$s1b" ;;
          esac ;;
      esac
    done
  done <<'ROWS'
tops3cret	fwd.example	User@Example.COM
tops3cret	fwd.example	alice@example.org
another secret	relay.example.net	bob.smith+list@sub.example.co.uk
k	f.example	x=y@z.example
ROWS
done
########## the other way: our output checked by Exim and postsrsd/Mail::SRS ##########
# MAKER: the crate's `make-vectors` example binary; built here unless given.
if [ -z "${MAKER:-}" ]; then
  root="$(cd "$here/../../.." && pwd)"
  (cd "$root" && cargo build -q -p portcullis-batv --example make-vectors)
  MAKER="${CARGO_TARGET_DIR:-$root/target}/debug/examples/make-vectors"
fi
ours="$out/ours-checked.tsv"
{
  echo "# tags/SRS addresses made by portcullis-batv (examples/make-vectors.rs), checked by"
  echo "# $("${exim_cmd[@]}" -bV | head -1) \${prvscheck} and postsrsd / Mail::SRS reverse, under faketime at CHECKED_AT"
  printf '# kind\tmade_at\tkey\tsecret\tforwarder\tinput\tours\tchecker\tchecked_at\tverdict\n'
} > "$ours"
for day in 20454 20995 21100; do
  t=$(noon "$day")
  while IFS=$'\t' read -r k secret addr; do
    tag=$(printf 'prvs\t%s\t%s\t%s\t%s\n' "$t" "$k" "$secret" "$addr" | "$MAKER")
    for d in 0 7 8; do
      ct=$(( t + d * 86400 ))
      r=$(exim_be "$ct" "\${prvscheck{$tag}{$secret}{[\$prvscheck_result]}}")
      case "$r" in "[1]") v=valid ;; "[]") v=invalid ;; "") v=not-prvs ;; *) v="unexpected:$r" ;; esac
      printf 'prvs\t%s\t%s\t%s\t-\t%s\t%s\texim\t%s\t%s\n' "$t" "$k" "$secret" "$addr" "$tag" "$ct" "$v" >> "$ours"
    done
  done <<'ROWS'
0	ours-0	first.last@Example.org
4	k4	a+b=c@x.example
9	a much longer secret for key nine	very.long.local.part.with.atoms@d.example
2	s	O'Brien@mail.example
ROWS
  while IFS=$'\t' read -r secret fwd addr; do
    f=$(printf 'srs\t%s\t%s\t%s\t%s\n' "$t" "$secret" "$fwd" "$addr" | "$MAKER")
    for d in 0 21 22; do
      ct=$(( t + d * 86400 ))
      printf 'srs\t%s\t-\t%s\t%s\t%s\t%s\tpostsrsd\t%s\t%s\n' "$t" "$secret" "$fwd" "$addr" "$f" "$ct" \
        "$(postsrsd_query "$ct" "$secret" "$fwd" reverse "$f")" >> "$ours"
    done
    printf 'srs\t%s\t-\t%s\t%s\t%s\t%s\tmail-srs\t%s\t%s\n' "$t" "$secret" "$fwd" "$addr" "$f" "$t" \
      "$(perl_srs "$t" "$secret" "$fwd" reverse "$f")" >> "$ours"
    # Our SRS1 (second hop), reversed by both tools.
    s1=$(printf 'srs\t%s\t%s\t%s\t%s\n' "$t" "$secret" hop2.example "$f" | "$MAKER")
    printf 'srs\t%s\t-\t%s\t%s\t%s\t%s\tpostsrsd\t%s\t%s\n' "$t" "$secret" hop2.example "$f" "$s1" "$t" \
      "$(postsrsd_query "$t" "$secret" hop2.example reverse "$s1")" >> "$ours"
    printf 'srs\t%s\t-\t%s\t%s\t%s\t%s\tmail-srs\t%s\t%s\n' "$t" "$secret" hop2.example "$f" "$s1" "$t" \
      "$(perl_srs "$t" "$secret" hop2.example reverse "$s1")" >> "$ours"
  done <<'ROWS'
ours-secret	forward.example	Mixed.Case@Sender.Example
s	f.example	plain@example.net
ROWS
done
echo "wrote $sign $check $srsf $ours"
