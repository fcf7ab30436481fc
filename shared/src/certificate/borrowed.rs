//! A borrowed walk over a certificate's DER, for the request path.
//!
//! x509-cert's owned decoder copies every name attribute, extension and key into the heap,
//! and its derived decoders spend most of a cold request on bookkeeping. Here the bulky,
//! regular parts — the certificate's frame, the two names and the extension list — are
//! walked over the input with a small TLV reader, and every leaf whose rules are subtle (the
//! version, serial number, algorithm identifiers, validity, public key, signature, and the
//! extensions certbind reads) is handed, as its own TLV slice, to the very `der`/x509-cert
//! decoder the owned path uses. The walk is never laxer than x509-cert's `Certificate`
//! decoder: the tests feed both the test PKI and thousands of damaged copies and require that
//! whatever is accepted here is accepted there, with the same facts.

use der::asn1::{AnyRef, BitStringRef, ContextSpecific, ObjectIdentifier};
use der::{Decode, Reader, SliceReader, Tag, TagNumber, Tagged};
use std::ops::Range;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use x509_cert::time::Validity;
use x509_cert::Version;

/// What the walk found wrong, and in which part of the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalkError {
    pub part: &'static str,
    pub problem: String,
}

impl WalkError {
    fn new(part: &'static str, problem: impl Into<String>) -> Self {
        WalkError { part, problem: problem.into() }
    }
}

type Walked<T> = Result<T, WalkError>;

fn der_error(part: &'static str) -> impl Fn(der::Error) -> WalkError {
    move |e| WalkError::new(part, e.to_string())
}

/// One TLV: its tag, its value, and the whole encoding.
#[derive(Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub tag: Tag,
    pub value: &'a [u8],
    pub encoded: &'a [u8],
}

/// Reads TLVs off a byte slice with DER's rules for tags and lengths (the rules of `der`'s
/// `Header`; lengths are capped at two octets, which covers every length a certificate of at
/// most [`super::MAX_CERTIFICATE_DER`] bytes can hold).
pub(crate) struct TlvReader<'a> {
    rest: &'a [u8],
    part: &'static str,
}

impl<'a> TlvReader<'a> {
    pub(crate) fn new(bytes: &'a [u8], part: &'static str) -> Self {
        TlvReader { rest: bytes, part }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_byte(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    pub(crate) fn next(&mut self) -> Walked<Tlv<'a>> {
        let error = |problem: &str| WalkError::new(self.part, problem);
        let (&tag_byte, after_tag) = self.rest.split_first().ok_or_else(|| error("truncated"))?;
        let tag = Tag::try_from(tag_byte).map_err(der_error(self.part))?;
        let (&first, after_first) = after_tag.split_first().ok_or_else(|| error("truncated length"))?;
        let (len, after_len) = match first {
            short @ 0..=0x7f => (usize::from(short), after_first),
            0x81 => match after_first.split_first() {
                Some((&len, rest)) if len >= 0x80 => (usize::from(len), rest),
                Some(_) => return Err(error("length not in its shortest form")),
                None => return Err(error("truncated length")),
            },
            0x82 => match after_first {
                [high, low, rest @ ..] if *high != 0 => ((usize::from(*high) << 8) | usize::from(*low), rest),
                [_, _, ..] => return Err(error("length not in its shortest form")),
                _ => return Err(error("truncated length")),
            },
            0x80 => return Err(error("indefinite length")),
            _ => return Err(error("length longer than a certificate may be")),
        };
        if after_len.len() < len {
            return Err(error("value runs past its enclosing element"));
        }
        let (value, rest) = after_len.split_at(len);
        let encoded_len = self.rest.len() - rest.len();
        let encoded = self.rest.get(..encoded_len).ok_or_else(|| error("truncated"))?;
        self.rest = rest;
        Ok(Tlv { tag, value, encoded })
    }

    pub(crate) fn expect(&mut self, tag: Tag, what: &'static str) -> Walked<Tlv<'a>> {
        let tlv = self.next()?;
        if tlv.tag != tag {
            return Err(WalkError::new(self.part, format!("{what}: expected {tag}, found {}", tlv.tag)));
        }
        Ok(tlv)
    }

    /// An OBJECT IDENTIFIER, checked as `der` checks one.
    pub(crate) fn oid(&mut self, what: &'static str) -> Walked<ObjectIdentifier> {
        let oid = self.expect(Tag::ObjectIdentifier, what)?;
        ObjectIdentifier::from_bytes(oid.value).map_err(|e| WalkError::new(self.part, format!("{what}: {e}")))
    }

    /// The one TLV `bytes` must hold (the contents of an EXPLICIT tag).
    pub(crate) fn single(bytes: &'a [u8], part: &'static str) -> Walked<Tlv<'a>> {
        let mut reader = TlvReader::new(bytes, part);
        let tlv = reader.next()?;
        reader.finish()?;
        Ok(tlv)
    }

    pub(crate) fn finish(&self) -> Walked<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WalkError::new(self.part, format!("{} unexpected trailing bytes", self.rest.len())))
        }
    }
}

/// One attribute of a name.
#[derive(Clone, Copy)]
pub(crate) struct AttributeRef<'a> {
    pub oid: ObjectIdentifier,
    pub value: AnyRef<'a>,
    /// The attribute's whole encoding: a multi-valued RDN is ordered by it.
    encoded: &'a [u8],
}

/// A Name, checked: its attributes, and each RDN as a range of them, in encoded (least
/// specific first) order.
pub(crate) struct NameRef<'a> {
    attributes: Vec<AttributeRef<'a>>,
    rdns: Vec<Range<usize>>,
}

impl<'a> NameRef<'a> {
    /// Reads a Name from the contents of its SEQUENCE, checking every RDN and attribute.
    pub fn from_contents(contents: &'a [u8], part: &'static str) -> Walked<Self> {
        let mut reader = TlvReader::new(contents, part);
        let mut name = NameRef { attributes: Vec::with_capacity(8), rdns: Vec::with_capacity(8) };
        while !reader.is_empty() {
            let rdn = reader.expect(Tag::Set, "relative distinguished name")?;
            name.push_rdn(rdn.value, part)?;
        }
        Ok(name)
    }

    /// Reads a whole Name TLV (tests and the reference decoder read x509-cert's names here).
    #[cfg(any(test, feature = "x509-reference"))]
    pub fn from_der(der: &'a [u8]) -> Walked<Self> {
        let mut reader = TlvReader::new(der, "name");
        let name = reader.expect(Tag::Sequence, "name")?;
        reader.finish()?;
        Self::from_contents(name.value, "name")
    }

    /// Bytes of all attribute values, to size the rendered text.
    pub fn value_bytes(&self) -> usize {
        self.attributes.iter().map(|a| a.value.value().len()).sum()
    }

    pub fn attribute_count(&self) -> usize {
        self.attributes.len()
    }

    /// RDNs most specific first, each with its attributes in DER order.
    pub fn rdns_most_specific_first(&self) -> impl Iterator<Item = &[AttributeRef<'a>]> + '_ {
        self.rdns.iter().rev().map(|range| self.attributes.get(range.clone()).unwrap_or_default())
    }

    /// The attributes of one RDN's SET, sorted by encoding as DER orders a SET OF (x509-cert
    /// sorts rather than refuses an unsorted SET, so this does too); a repeated attribute is
    /// refused, as there.
    fn push_rdn(&mut self, set: &'a [u8], part: &'static str) -> Walked<()> {
        let start = self.attributes.len();
        let mut reader = TlvReader::new(set, part);
        while !reader.is_empty() {
            let attribute = reader.expect(Tag::Sequence, "attribute")?;
            let mut inner = TlvReader::new(attribute.value, part);
            let oid = inner.oid("attribute type")?;
            let value = inner.next()?;
            inner.finish()?;
            let value = AnyRef::new(value.tag, value.value).map_err(der_error(part))?;
            self.attributes.push(AttributeRef { oid, value, encoded: attribute.encoded });
        }
        let rdn = self.attributes.get_mut(start..).unwrap_or_default();
        if rdn.len() > 1 {
            rdn.sort_by(|a, b| a.encoded.cmp(b.encoded));
            if rdn.windows(2).any(|pair| pair.first().map(|a| a.encoded) == pair.get(1).map(|b| b.encoded)) {
                return Err(WalkError::new(part, "an attribute appears twice in one RDN"));
            }
        }
        self.rdns.push(start..self.attributes.len());
        Ok(())
    }
}

/// One extension: its id, and the contents of its OCTET STRING.
pub(crate) struct ExtensionRef<'a> {
    pub extn_id: ObjectIdentifier,
    pub extn_value: &'a [u8],
}

/// The certificate's parts certbind reads; everything else has been checked and skipped.
pub(crate) struct CertificateRef<'a> {
    pub serial_number: SerialNumber,
    pub issuer: NameRef<'a>,
    pub validity: Validity,
    pub subject: NameRef<'a>,
    /// The subject Name's and the SubjectPublicKeyInfo's whole encodings, for a CA's facts.
    pub subject_der: &'a [u8],
    pub spki_der: &'a [u8],
    pub extensions: Vec<ExtensionRef<'a>>,
}

impl<'a> CertificateRef<'a> {
    /// Walks exactly one certificate; `der` must hold nothing else.
    pub fn walk(der: &'a [u8]) -> Walked<Self> {
        let mut outer = TlvReader::new(der, "certificate");
        let certificate = outer.expect(Tag::Sequence, "certificate")?;
        if !outer.is_empty() {
            return Err(WalkError::new(
                "trailing",
                format!("{} trailing bytes after the certificate", der.len() - certificate.encoded.len()),
            ));
        }
        let mut parts = TlvReader::new(certificate.value, "certificate");
        let tbs = parts.expect(Tag::Sequence, "tbsCertificate")?;
        let signature_algorithm = parts.next()?;
        AlgorithmIdentifierRef::from_der(signature_algorithm.encoded).map_err(der_error("signatureAlgorithm"))?;
        let signature = parts.next()?;
        BitStringRef::from_der(signature.encoded).map_err(der_error("signatureValue"))?;
        parts.finish()?;
        Self::walk_tbs(tbs.value)
    }

    fn walk_tbs(tbs: &'a [u8]) -> Walked<Self> {
        let mut fields = TlvReader::new(tbs, "tbsCertificate");
        // version [0] EXPLICIT Version DEFAULT v1
        if fields.peek_byte() == Some(0xa0) {
            let version = fields.next()?;
            let integer = TlvReader::single(version.value, "version")?;
            Version::from_der(integer.encoded).map_err(der_error("version"))?;
        }
        let serial = fields.next()?;
        let serial_number = SerialNumber::from_der(serial.encoded).map_err(der_error("serialNumber"))?;
        let signature = fields.next()?;
        AlgorithmIdentifierRef::from_der(signature.encoded).map_err(der_error("signature"))?;
        let issuer = fields.expect(Tag::Sequence, "issuer")?;
        let issuer = NameRef::from_contents(issuer.value, "issuer")?;
        let validity = fields.next()?;
        let validity = Validity::from_der(validity.encoded).map_err(der_error("validity"))?;
        let subject_tlv = fields.expect(Tag::Sequence, "subject")?;
        let subject = NameRef::from_contents(subject_tlv.value, "subject")?;
        let spki = fields.next()?;
        SubjectPublicKeyInfoRef::from_der(spki.encoded).map_err(der_error("subjectPublicKeyInfo"))?;

        // The optional tail: [1] and [2] IMPLICIT BIT STRING, [3] EXPLICIT Extensions, read by
        // the same `der` calls x509-cert's derived decoder makes.
        let mut tail = SliceReader::new(fields.rest).map_err(der_error("tbsCertificate"))?;
        ContextSpecific::<BitStringRef<'_>>::decode_implicit(&mut tail, TagNumber::N1)
            .map_err(der_error("issuerUniqueID"))?;
        ContextSpecific::<BitStringRef<'_>>::decode_implicit(&mut tail, TagNumber::N2)
            .map_err(der_error("subjectUniqueID"))?;
        let extensions = ContextSpecific::<AnyRef<'a>>::decode_explicit(&mut tail, TagNumber::N3)
            .map_err(der_error("extensions"))?;
        if !tail.is_finished() {
            return Err(WalkError::new("tbsCertificate", format!("{} unexpected trailing bytes", tail.remaining_len())));
        }
        let extensions = match extensions {
            Some(list) if list.value.tag() == Tag::Sequence => Self::walk_extensions(list.value.value())?,
            Some(list) => {
                return Err(WalkError::new("extensions", format!("expected SEQUENCE, found {}", list.value.tag())))
            }
            None => Vec::new(),
        };
        Ok(CertificateRef {
            serial_number,
            issuer,
            validity,
            subject,
            subject_der: subject_tlv.encoded,
            spki_der: spki.encoded,
            extensions,
        })
    }

    /// `Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }`
    fn walk_extensions(list: &'a [u8]) -> Walked<Vec<ExtensionRef<'a>>> {
        let part = "extensions";
        let mut reader = TlvReader::new(list, part);
        let mut extensions = Vec::with_capacity(10);
        while !reader.is_empty() {
            let extension = reader.expect(Tag::Sequence, "extension")?;
            let mut fields = TlvReader::new(extension.value, part);
            let extn_id = fields.oid("extnID")?;
            if fields.peek_byte() == Some(0x01) {
                let critical = fields.next()?;
                if !matches!(critical.value, [0x00] | [0xff]) {
                    return Err(WalkError::new(part, "critical is not a DER BOOLEAN"));
                }
            }
            let value = fields.expect(Tag::OctetString, "extnValue")?;
            fields.finish()?;
            extensions.push(ExtensionRef { extn_id, extn_value: value.value });
        }
        Ok(extensions)
    }
}
