// The Example upload: an image of the user's as the query (refused here when over the service's
// upload limit) and its thumbnail for the query box.
import { info } from "./indexinfo.js";
import { $, setStatus } from "./status.js";

/** The uploaded image as an object URL for the query box (null for a TIFF, which browsers cannot show). */
export let uploadUrl = null;

/** Search with each image chosen in the Example input: onImage(file). */
export function installUpload(onImage) {
  $("upload").addEventListener("change", (ev) => {
    const file = ev.target.files && ev.target.files[0];
    if (!file) return;
    const limits = (info && info.limits) || {};
    if (limits.max_upload_bytes && file.size > limits.max_upload_bytes) {  // refused here, before any byte is sent
      setStatus(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB, over the service's ` +
                `${(limits.max_upload_bytes / 1e6).toFixed(1)} MB upload limit; choose a smaller image or crop it`, "error");
      ev.target.value = "";
      return;
    }
    if (uploadUrl) URL.revokeObjectURL(uploadUrl);
    uploadUrl = /tiff?$/i.test(file.type) || /\.tiff?$/i.test(file.name) ? null : URL.createObjectURL(file);
    onImage(file);
    ev.target.value = "";
  });
}
