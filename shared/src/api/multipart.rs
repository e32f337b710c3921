//! `multipart/form-data` bodies of the upload routes, parsed with `multer`.

use bytes::Bytes;
use futures_util::stream;
use http::HeaderMap;

use super::ApiError;
use crate::jobfile::FileFormat;
use crate::service::FileUpload;

/// The fields of an upload form.
#[derive(Debug, Default)]
pub struct UploadForm {
    pub file: Option<FileUpload>,
    pub id: Option<String>,
}

const FIELDS: [&str; 2] = ["file", "id"];

pub async fn parse_upload_form(headers: &HeaderMap, body: Bytes) -> Result<UploadForm, ApiError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(ApiError::bad_request(
            "Content-Type",
            "the body must be multipart/form-data with a file field",
        ));
    }
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::bad_request(
            "Content-Type",
            "multipart/form-data needs a boundary parameter",
        )
    })?;
    let constraints = multer::Constraints::new()
        .allowed_fields(FIELDS.to_vec())
        .size_limit(multer::SizeLimit::new().for_field("id", 64));
    let body = stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);
    let mut form = UploadForm::default();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) => return Err(malformed(error)),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let csv_type = field
            .content_type()
            .is_some_and(|mime| mime.essence_str().eq_ignore_ascii_case("text/csv"));
        let data = field.bytes().await.map_err(malformed)?;
        match name.as_str() {
            "file" if form.file.is_some() => {
                return Err(ApiError::bad_request("file", "file must be sent once"))
            }
            "file" => {
                let filename = filename.unwrap_or_else(|| "upload.json".to_owned());
                let format = if csv_type {
                    FileFormat::Csv
                } else {
                    FileFormat::of_key(&filename)
                };
                form.file = Some(FileUpload {
                    filename,
                    body: data,
                    format,
                })
            }
            "id" if form.id.is_some() => {
                return Err(ApiError::bad_request("id", "id must be sent once"))
            }
            _ => {
                let text = String::from_utf8(data.to_vec())
                    .map_err(|_| ApiError::bad_request("id", "id must be a positive integer"))?;
                form.id = Some(text.trim().to_owned());
            }
        }
    }
    Ok(form)
}

fn malformed(error: multer::Error) -> ApiError {
    match error {
        multer::Error::UnknownField { field_name } => ApiError::bad_request(
            field_name.as_deref().unwrap_or("form"),
            format!(
                "unknown form field '{}'; the fields are file and id",
                field_name.as_deref().unwrap_or_default()
            ),
        ),
        multer::Error::FieldSizeExceeded { field_name, .. } => ApiError::bad_request(
            field_name.as_deref().unwrap_or("form"),
            "form field is too long",
        ),
        other => ApiError::bad_request("body", format!("the multipart body is malformed: {other}")),
    }
}
